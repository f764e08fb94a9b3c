//! Arbitrary web configuration files (`--web.config.file`): reading one
//! never panics, a file is judged the same way twice, and a refused one
//! says why in a message that names the file.
use std::path::Path;

use crate::export::server::web::WebConfig;

pub fn run(data: &[u8]) {
    let path = Path::new("/nonexistent/fuzz-web.yml");
    let text = String::from_utf8_lossy(data);
    let judge = || WebConfig::parse(path, &text).map(|c| (c.users.len(), c.headers.len()));
    match (judge(), judge()) {
        (Ok(first), Ok(second)) => assert_eq!(first, second),
        (Err(first), Err(second)) => {
            let message = first.to_string();
            assert!(message.contains("fuzz-web.yml"), "{message}");
            assert_eq!(message, second.to_string());
        }
        (first, second) => panic!("judged twice: {first:?} then {second:?}"),
    }
}
