//! The connection state machine fed like the probes feed it.
use super::*;

fn packet(seq: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut out = len.to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(body);
    out
}

fn query(sql: &str) -> Vec<u8> {
    let mut body = vec![COM_QUERY];
    body.extend_from_slice(sql.as_bytes());
    packet(0, &body)
}

fn ok(status: u16) -> Vec<u8> {
    let mut body = vec![0, 1, 0];
    body.extend_from_slice(&status.to_le_bytes());
    body.extend_from_slice(&[0, 0]);
    packet(1, &body)
}

fn eof(status: u16) -> Vec<u8> {
    let mut body = vec![0xfe, 0, 0];
    body.extend_from_slice(&status.to_le_bytes());
    packet(9, &body)
}

fn result_set(rows: usize, status: u16) -> Vec<u8> {
    let mut out = packet(1, &[1]); // one column
    out.extend(packet(
        2,
        b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00",
    ));
    out.extend(eof(status));
    for _ in 0..rows {
        out.extend(packet(4, b"\x011"));
    }
    out.extend(eof(status));
    out
}

fn err() -> Vec<u8> {
    packet(1, b"\xff\x7a\x04#42S02Table doesn't exist")
}

type Wire = crate::protocols::testing::Wire<MysqlConn>;

/// A connection through its handshake.
fn connected() -> Wire {
    let mut wire = Wire::new(MysqlConn::new());
    let greeting = packet(0, b"\x0a10.11.19-MariaDB\x00\x01\x00\x00\x00abcdefgh\x00");
    assert!(MysqlConn::recognise(&greeting));
    wire.rx(&greeting);
    wire.tx(&packet(1, &[0x0d, 0xa6, 0x0f, 0x00, 0, 0, 0, 1, 0x21]));
    wire.rx(&ok(0x0002));
    wire
}

#[test]
fn queries_results_errors_and_transactions() {
    let mut wire = connected();
    wire.tx(&query("BEGIN")).rx(&ok(0x0003));
    assert!(wire.conn.is_busy(), "in a transaction");
    wire.tx(&query("SELECT a FROM t"))
        .rx(&result_set(3, 0x0003));
    wire.tx(&query("INSERT INTO t VALUES (1)")).rx(&ok(0x0003));
    wire.tx(&query("SELECT * FROM nope")).rx(&err());
    wire.tx(&query("COMMIT")).rx(&ok(0x0002));
    assert!(!wire.conn.is_busy());
    // A ping is not a statement.
    wire.tx(&packet(0, &[0x0e])).rx(&ok(0x0002));
    assert_eq!(
        wire.seen(),
        [
            ("begin", false),
            ("select", false),
            ("insert", false),
            ("select", true),
            ("commit", false)
        ]
    );
}

#[test]
fn prepared_statements_by_id() {
    let mut wire = connected();
    let mut prepare = vec![COM_STMT_PREPARE];
    prepare.extend_from_slice(b"UPDATE t SET a = ? WHERE b = ?");
    wire.tx(&packet(0, &prepare));
    // OK, id 7, 0 columns, 2 params; two definitions and an EOF.
    let mut answer = packet(1, b"\x00\x07\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00");
    answer.extend(packet(2, b"\x03def"));
    answer.extend(packet(3, b"\x03def"));
    answer.extend(eof(0x0002));
    wire.rx(&answer);
    let execute = packet(0, b"\x17\x07\x00\x00\x00\x00\x01\x00\x00\x00");
    wire.tx(&execute).rx(&ok(0x0002));
    wire.tx(&execute).rx(&ok(0x0002));
    let unknown = packet(0, b"\x17\x63\x00\x00\x00\x00\x01\x00\x00\x00");
    wire.tx(&unknown).rx(&ok(0x0002));
    assert_eq!(
        wire.seen(),
        [("update", false), ("update", false), ("unknown", false)]
    );
}

#[test]
fn long_results_resynchronise_and_ssl_is_not_read() {
    let mut wire = connected();
    wire.tx(&query("select a from big"));
    let whole = result_set(500, 0x0002);
    let out = &mut wire.out;
    wire.conn
        .on_rx(50, &whole[..100], whole.len() as u64 + 7, false, &mut |s| {
            out.push(s)
        });
    assert!(out.is_empty());
    wire.conn.on_rx(
        50,
        &whole[whole.len() - 64..],
        whole.len() as u64,
        true,
        &mut |s| out.push(s),
    );
    assert_eq!(wire.seen(), [("select", false)]);
    wire.tx(&query("delete from t")).rx(&ok(0x0002));
    assert_eq!(wire.seen().last(), Some(&("delete", false)));

    let mut tls = MysqlConn::new();
    tls.on_tx(
        1,
        &packet(
            1,
            &[
                0x00, 0x0a, 0, 0, 0, 0, 0, 1, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        36,
    );
    assert!(!tls.is_parsing());
}

#[test]
fn recognises_handshakes_and_commands() {
    assert!(MysqlConn::recognise_command(&query("SELECT 1")));
    assert!(!MysqlConn::recognise_command(b"*1\r\n$4\r\nPING\r\n"));
    assert!(!MysqlConn::recognise(b"HTTP/1.1 200 OK\r\n"));
}

#[test]
fn results_ended_by_ok_when_eof_is_deprecated() {
    let mut wire = connected();
    wire.conn.deprecate_eof = true;
    wire.tx(&query("SELECT a FROM t"));
    let mut answer = packet(1, &[1]);
    answer.extend(packet(2, b"\x03def"));
    answer.extend(packet(3, b"\x011"));
    answer.extend(packet(4, b"\xfe\x00\x00\x03\x00\x00\x00")); // OK with header 0xfe, in a transaction
    wire.rx(&answer);
    assert_eq!(wire.seen(), [("select", false)]);
    assert!(wire.conn.is_busy());
}

#[test]
fn mariadb_bulk_execute_and_execute_of_the_last_prepared() {
    let mut wire = connected();
    // Connector/J pipelines a prepare and an execute of id 0xffffffff in
    // one write; the answers follow in one read.
    let mut prepare = vec![COM_STMT_PREPARE];
    prepare.extend_from_slice(b"INSERT INTO t VALUES (?)");
    let mut both = packet(0, &prepare);
    both.extend(packet(
        0,
        b"\x17\xff\xff\xff\xff\x00\x01\x00\x00\x00\x00\x01\x03\x00\x05\x00\x00\x00",
    ));
    wire.tx(&both);
    // OK, id 3, 0 columns, 1 param; its definition and an EOF; then the
    // execute's OK.
    let mut answer = packet(1, b"\x00\x03\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00");
    answer.extend(packet(2, b"\x03def"));
    answer.extend(eof(0x0002));
    answer.extend(ok(0x0002));
    wire.rx(&answer);
    // A bulk execution of statement 3 with three rows: one statement.
    let mut bulk = b"\xfa\x03\x00\x00\x00\x80\x00\x03\x00".to_vec();
    for row in 1..=3u32 {
        bulk.push(0); // no indicator
        bulk.extend_from_slice(&row.to_le_bytes());
    }
    wire.tx(&packet(0, &bulk)).rx(&ok(0x0002));
    assert_eq!(wire.seen(), [("insert", false), ("insert", false)]);
    assert!(MysqlConn::recognise_command(&packet(0, &bulk)));
}
