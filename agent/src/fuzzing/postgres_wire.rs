//! Arbitrary frontend and backend bytes on one PostgreSQL connection (see
//! `database`).

pub fn run(data: &[u8]) {
    super::database::run::<crate::protocols::postgres::PgConn>(data);
}
