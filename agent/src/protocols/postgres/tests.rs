//! The connection state machine fed like the probes feed it.
use super::*;

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn startup() -> Vec<u8> {
    let mut body = PROTOCOL_3.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0app\0\0");
    let mut out = (body.len() as u32 + 4).to_be_bytes().to_vec();
    out.extend(body);
    out
}

fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', format!("{tag}\0").as_bytes())
}

type Wire = crate::protocols::testing::Wire<PgConn>;

#[test]
fn ssl_refused_then_simple_queries_with_transaction_status() {
    let mut ssl = 8u32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
    let mut wire = Wire::new(PgConn::new());
    wire.tx(&ssl).rx(b"N").tx(&startup());
    wire.rx(&cat(&[msg(b'R', &[0, 0, 0, 0]), ready(b'I')]));
    wire.tx(&msg(b'Q', b"BEGIN\0"))
        .rx(&cat(&[complete("BEGIN"), ready(b'T')]));
    assert!(wire.conn.is_busy(), "inside a transaction");
    wire.tx(&msg(b'Q', b"insert into t values (1); select * from t\0"));
    wire.rx(&cat(&[
        complete("INSERT 0 1"),
        msg(b'D', b"xx"),
        complete("SELECT 1"),
        ready(b'T'),
    ]));
    wire.tx(&msg(b'Q', b"SELEC oops\0"))
        .rx(&cat(&[msg(b'E', b"SERROR\0"), ready(b'E')]));
    wire.tx(&msg(b'Q', b"ROLLBACK\0"))
        .rx(&cat(&[complete("ROLLBACK"), ready(b'I')]));
    assert!(!wire.conn.is_busy());
    assert_eq!(
        wire.seen(),
        [
            ("begin", false),
            ("insert", false),
            ("select", false),
            ("other", true),
            ("rollback", false)
        ]
    );
    assert_eq!(wire.out[0].end_ns - wire.out[0].start_ns, 10);
}

#[test]
fn accepted_ssl_is_counted_but_not_read() {
    let mut ssl = 8u32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
    let mut wire = Wire::new(PgConn::new());
    wire.tx(&ssl)
        .rx(b"S")
        .tx(b"\x16\x03\x01 tls")
        .rx(b"\x16\x03\x03");
    assert!(wire.out.is_empty());
    assert!(!wire.conn.is_parsing());
}

#[test]
fn pipelined_extended_batches_named_statements_and_errors() {
    let mut wire = Wire::new(PgConn::mid_stream());
    // asyncpg: prepare a named statement, then execute it three times in
    // one pipelined write (executemany), then once more.
    wire.tx(&cat(&[
        msg(b'P', b"__s1\0INSERT INTO t VALUES ($1)\0\0\0"),
        msg(b'D', b"S__s1\0"),
        msg(b'S', b""),
    ]));
    wire.rx(&cat(&[
        msg(b'1', b""),
        msg(b't', b"\0\0"),
        msg(b'n', b""),
        ready(b'I'),
    ]));
    let bind_exec = cat(&[msg(b'B', b"\0__s1\0\0\0\0\0\0\0"), msg(b'E', b"\0\0\0\0\0")]);
    wire.tx(&cat(&[
        bind_exec.clone(),
        bind_exec.clone(),
        bind_exec.clone(),
        msg(b'S', b""),
    ]));
    // The second fails: the third is skipped by the server.
    wire.rx(&cat(&[
        msg(b'2', b""),
        complete("INSERT 0 1"),
        msg(b'2', b""),
        msg(b'E', b"SERROR\0"),
        ready(b'I'),
    ]));
    // A statement prepared before loupe watched, then an unnamed one.
    wire.tx(&cat(&[
        msg(b'B', b"\0old\0\0\0\0\0\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ]));
    wire.tx(&cat(&[
        msg(b'P', b"\0delete from t\0\0\0"),
        msg(b'B', b"\0\0\0\0\0\0\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ]));
    wire.rx(&cat(&[msg(b'2', b""), complete("UPDATE 2"), ready(b'I')]));
    wire.rx(&cat(&[
        msg(b'1', b""),
        msg(b'2', b""),
        complete("DELETE 1"),
        ready(b'I'),
    ]));
    // A prepare (Parse, Describe, Sync) of a statement that fails.
    wire.tx(&cat(&[
        msg(b'P', b"__s2\0select * from nope\0\0\0"),
        msg(b'D', b"S__s2\0"),
        msg(b'S', b""),
    ]));
    wire.rx(&cat(&[msg(b'E', b"SERROR\0"), ready(b'I')]));
    // The same flushed without Sync (asyncpg), which syncs after the error.
    wire.tx(&cat(&[
        msg(b'P', b"__s3\0update nope\0\0\0"),
        msg(b'D', b"S__s3\0"),
        msg(b'H', b""),
    ]));
    wire.rx(&msg(b'E', b"SERROR\0"));
    wire.tx(&msg(b'S', b"")).rx(&ready(b'I'));
    assert_eq!(
        wire.seen(),
        [
            ("insert", false),
            ("insert", true),
            ("unknown", false),
            ("delete", false),
            ("select", true),
            ("update", true)
        ]
    );
}

#[test]
fn long_results_resynchronise_at_ready_for_query() {
    let mut wire = Wire::new(PgConn::mid_stream());
    wire.tx(&msg(b'Q', b"select * from big\0"));
    // A 50 kB read of which the probes copied the start and the end.
    let mut head = msg(b'T', b"\0\x01");
    head.extend(msg(b'D', &[1; 30]));
    let mut rows = b"D\0\0".to_vec(); // a header cut by the capture
    rows.splice(0..0, head.clone());
    let out = &mut wire.out;
    wire.conn
        .on_rx(5, &rows, 50_000, false, &mut |s| out.push(s));
    assert!(out.is_empty());
    let tail = cat(&[complete("SELECT 900"), ready(b'I')]);
    wire.conn
        .on_rx(5, &tail, 50_000, true, &mut |s| out.push(s));
    assert_eq!(wire.seen(), [("select", false)]);
    wire.tx(&msg(b'Q', b"commit\0"))
        .rx(&cat(&[complete("COMMIT"), ready(b'I')]));
    assert_eq!(wire.seen().last(), Some(&("commit", false)));
}

#[test]
fn recognises_connections_by_their_first_bytes() {
    assert_eq!(PgConn::recognise(&startup()), Some(false));
    assert_eq!(PgConn::recognise(&msg(b'Q', b"select 1\0")), Some(true));
    assert_eq!(
        PgConn::recognise(&cat(&[msg(b'B', b"\0\0\0\0"), msg(b'E', b"\0\0\0\0\0")])),
        Some(true)
    );
    assert_eq!(PgConn::recognise(b"POST / HTTP/1.1\r\n"), None);
    assert_eq!(PgConn::recognise(b"*1\r\n$4\r\nPING\r\n"), None);
    assert_eq!(PgConn::recognise(b"Q"), None);
}

#[test]
fn copy_in_through_a_simple_query() {
    let mut wire = Wire::new(PgConn::mid_stream());
    wire.tx(&msg(b'Q', b"COPY t FROM STDIN\0"));
    wire.rx(&msg(b'G', b"\0\0\x01\0\0"));
    wire.tx(&cat(&[
        msg(b'd', b"1\tx\n"),
        msg(b'd', b"2\ty\n"),
        msg(b'c', b""),
    ]));
    wire.rx(&cat(&[complete("COPY 2"), ready(b'I')]));
    assert_eq!(wire.seen(), [("copy", false)]);
}

#[test]
fn simple_queries_typed_by_their_leading_keywords_like_extended_ones() {
    let mut wire = Wire::new(PgConn::mid_stream());
    // The server tags both SELECT; the text says table and with.
    wire.tx(&msg(
        b'Q',
        b"TABLE t; WITH a AS (SELECT 1) SELECT * FROM a\0",
    ));
    wire.rx(&cat(&[
        complete("SELECT 2"),
        complete("SELECT 1"),
        ready(b'I'),
    ]));
    assert_eq!(wire.seen(), [("table", false), ("with", false)]);
    // A text longer than what is kept: statements past it by their tags.
    let mut long = "select 1;".repeat(100);
    long.push_str(" insert into t values (1)\0");
    wire.out.clear();
    wire.tx(&msg(b'Q', long.as_bytes()));
    let mut answer: Vec<Vec<u8>> = (0..100).map(|_| complete("SELECT 1")).collect();
    answer.push(complete("INSERT 0 1"));
    answer.push(ready(b'I'));
    wire.rx(&cat(&answer));
    let seen = wire.seen();
    assert_eq!(seen.len(), 101);
    assert_eq!(seen[..100], [("select", false); 100]);
    assert_eq!(seen[100], ("insert", false));
    // The second statement fails: counted as what it is.
    wire.out.clear();
    wire.tx(&msg(b'Q', b"select 1; update t set x = 0; delete from t\0"));
    wire.rx(&cat(&[
        complete("SELECT 1"),
        msg(b'E', b"SERROR\0\0"),
        ready(b'I'),
    ]));
    assert_eq!(wire.seen(), [("select", false), ("update", true)]);
}
