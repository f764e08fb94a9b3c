//! Arbitrary client and server bytes on one MySQL connection (see
//! `database`).

pub fn run(data: &[u8]) {
    super::database::run::<crate::protocols::mysql::MysqlConn>(data);
}
