//! Arbitrary frontend and backend bytes on one PostgreSQL connection (see
//! `database`).
use crate::protocols::postgres::PgConn;

pub fn run(data: &[u8]) {
    super::database::run(data, |mid_stream| {
        Box::new(if mid_stream {
            PgConn::mid_stream()
        } else {
            PgConn::new()
        })
    });
}
