//! Arbitrary client and server bytes on one MySQL connection (see
//! `database`).
use crate::protocols::mysql::MysqlConn;

pub fn run(data: &[u8]) {
    super::database::run(data, |mid_stream| {
        Box::new(if mid_stream {
            MysqlConn::mid_stream()
        } else {
            MysqlConn::new()
        })
    });
}
