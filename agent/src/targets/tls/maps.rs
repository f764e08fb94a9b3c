//! Which mapped files of a process may hold OpenSSL: from `/proc/PID/maps`.
use std::collections::BTreeSet;

/// A file mapped by a process: its device and inode identify it across
/// processes (a library shared by every worker is resolved once).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mapped {
    pub dev: String,
    pub inode: u64,
    pub path: String,
}

/// A file, by device and inode.
pub type FileId = (String, u64);

impl Mapped {
    pub fn id(&self) -> FileId {
        (self.dev.clone(), self.inode)
    }

    /// Named like an OpenSSL library (else: the executable).
    pub fn is_library(&self) -> bool {
        is_libssl(&self.path)
    }
}

/// Whether a file name looks like an OpenSSL library (`libssl.so.3`, a
/// wheel's bundled `libssl-1a2b3c.so.1.1`).
fn is_libssl(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libssl") && name.contains(".so")
}

/// The files of `maps` (the text of `/proc/PID/maps`) that may hold
/// OpenSSL's functions: libraries named like libssl, and the executable
/// `exe` itself (Node.js links OpenSSL statically). Each file once;
/// deleted files and malformed lines are skipped.
pub fn tls_candidates(maps: &str, exe: Option<&str>) -> Vec<Mapped> {
    let mut found = BTreeSet::new();
    for line in maps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_range), Some(perms), Some(_offset), Some(dev), Some(inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let path: Vec<&str> = fields.collect();
        let path = path.join(" ");
        if !perms.contains('x') || !path.starts_with('/') || path.ends_with("(deleted)") {
            continue;
        }
        let Ok(inode) = inode.parse::<u64>() else {
            continue;
        };
        if inode != 0 && (is_libssl(&path) || exe == Some(path.as_str())) {
            found.insert(Mapped {
                dev: dev.to_owned(),
                inode,
                path,
            });
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fd:01 100 /usr/bin/python3.11
55d0c0b00000-55d0c0c00000 r-xp 00100000 fd:01 100 /usr/bin/python3.11
7f00000a0000-7f00000b0000 r--p 00000000 fd:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f00000b0000-7f00000c0000 r-xp 00010000 fd:01 200 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f00000c0000-7f00000d0000 r-xp 00000000 fd:01 300 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f00000d0000-7f00000e0000 r-xp 00000000 00:2a 400 /app/venv/lib/cryptography.libs/libssl-5b4a9f.so.3
7f00000e0000-7f00000f0000 r-xp 00000000 00:2a 401 /tmp/libssl.so.3 (deleted)
7f00000f0000-7f0000100000 rw-p 00000000 00:00 0 [heap]
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0 [vdso]
garbage line
";

    #[test]
    fn finds_openssl_libraries_and_the_executable() {
        let found = tls_candidates(MAPS, Some("/usr/bin/python3.11"));
        let paths: Vec<&str> = found.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/app/venv/lib/cryptography.libs/libssl-5b4a9f.so.3",
                "/usr/bin/python3.11",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            ]
        );
        assert_eq!((found[2].dev.as_str(), found[2].inode), ("fd:01", 200));
        assert_eq!(tls_candidates(MAPS, None).len(), 2);
    }

    #[test]
    fn keeps_paths_with_spaces() {
        let maps = "7f0-7f1 r-xp 00000000 fd:01 9 /opt/my app/libssl.so.3\n";
        assert_eq!(
            tls_candidates(maps, None)[0].path,
            "/opt/my app/libssl.so.3"
        );
    }
}
