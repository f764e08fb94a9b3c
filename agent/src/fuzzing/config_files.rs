//! Arbitrary configuration files: parsing and validating never panic, a
//! file is judged the same way twice, and a refused one says why in a
//! message that names the file.
use std::path::Path;

use crate::config::{Config, FileConfig};

pub fn run(data: &[u8]) {
    let path = Path::new("fuzz.toml");
    let text = String::from_utf8_lossy(data);
    let check = || {
        let file = FileConfig::parse(path, &text)?;
        Config::check_file(path, file).map(|config| config.describe())
    };
    match (check(), check()) {
        (Ok(_), Ok(_)) => {}
        (Err(first), Err(second)) => {
            let message = first.to_string();
            assert!(message.contains("fuzz.toml"), "{message}");
            assert_eq!(message, second.to_string());
        }
        (first, second) => panic!("judged twice: {first:?} then {second:?}"),
    }
}
