//! tracefs: finding (or mounting) it, and checking that each tracepoint's
//! record layout is the one the probes were compiled against.
use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

use loupe_common::layout::Tracepoint;

/// Where tracefs may be mounted, in order of preference.
const CANDIDATES: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it on /sys/kernel/tracing failed: {source}; \
         run loupe as root (or with CAP_SYS_ADMIN), or mount it yourself: \
         mount -t tracefs tracefs /sys/kernel/tracing"
    )]
    Mount {
        #[source]
        source: io::Error,
    },
    #[error("tracefs is mounted at {path} but not readable: {source}; run loupe as root")]
    Access {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}: {source}; is the tracepoint {category}:{name} in this kernel?")]
    Format {
        category: &'static str,
        name: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "tracepoint {category}:{name} has field `{field}` at offset {found_offset} size \
         {found_size}, loupe's probes expect offset {offset} size {size}; this kernel's \
         layout is not supported, please report it with the output of `loupe check`"
    )]
    Layout {
        category: &'static str,
        name: &'static str,
        field: &'static str,
        offset: usize,
        size: usize,
        found_offset: usize,
        found_size: usize,
    },
    #[error("tracepoint {category}:{name} has no field `{field}` in this kernel")]
    MissingField {
        category: &'static str,
        name: &'static str,
        field: &'static str,
    },
}

/// How tracefs was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mounted {
    /// It was already mounted here.
    Found(PathBuf),
    /// loupe mounted it here.
    MountedByLoupe(PathBuf),
}

impl Mounted {
    pub fn path(&self) -> &Path {
        match self {
            Self::Found(path) | Self::MountedByLoupe(path) => path,
        }
    }
}

/// Mount points of file systems of type `fstype` in a `/proc/self/mounts` text.
pub fn mount_points(mounts: &str, fstype: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, target, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == fstype).then(|| PathBuf::from(target))
        })
        .collect()
}

/// The mounted tracefs, if any: a listed mount point (the usual place
/// first), else debugfs's `tracing` directory, which the kernel mounts on
/// first access.
pub fn find() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let listed = mount_points(&mounts, "tracefs");
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| listed.contains(path))
        .or_else(|| listed.into_iter().next())
        .or_else(|| {
            let automount = PathBuf::from(CANDIDATES[1]);
            automount.join("events").is_dir().then_some(automount)
        })
}

/// Finds tracefs, mounting it on `/sys/kernel/tracing` when it is missing.
pub fn find_or_mount() -> Result<Mounted, TracefsError> {
    if let Some(path) = find() {
        return match fs::read_dir(path.join("events")) {
            Ok(_) => Ok(Mounted::Found(path)),
            Err(source) => Err(TracefsError::Access { path, source }),
        };
    }
    let target = PathBuf::from(CANDIDATES[0]);
    mount_tracefs(&target).map_err(|source| TracefsError::Mount { source })?;
    Ok(Mounted::MountedByLoupe(target))
}

fn mount_tracefs(target: &Path) -> io::Result<()> {
    let source = CString::new("tracefs").expect("no NUL");
    let target = CString::new(target.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: valid NUL-terminated strings; null data is allowed for tracefs.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A field as a tracepoint's `format` file describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatField {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// Parses the fields of a tracepoint `format` file. Lines that are not field
/// descriptions are skipped.
pub fn parse_format(text: &str) -> Vec<FormatField> {
    text.lines().filter_map(parse_field_line).collect()
}

/// `\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;`
fn parse_field_line(line: &str) -> Option<FormatField> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    for part in line.split(';') {
        let part = part.trim();
        if let Some(rest) = part.strip_prefix("field:") {
            decl = Some(rest.trim());
        } else if let Some(rest) = part.strip_prefix("offset:") {
            offset = rest.trim().parse().ok();
        } else if let Some(rest) = part.strip_prefix("size:") {
            size = rest.trim().parse().ok();
        }
    }
    let decl = decl?;
    // The name is the last identifier, before any array suffix: `__u8 saddr[4]`.
    let decl = decl.split('[').next().unwrap_or(decl);
    let name = decl
        .rsplit(|c: char| c.is_whitespace() || c == '*')
        .find(|token| !token.is_empty())?;
    Some(FormatField {
        name: name.to_owned(),
        offset: offset?,
        size: size?,
    })
}

/// Checks a parsed layout against what the probe expects.
pub fn verify(tracepoint: &Tracepoint, fields: &[FormatField]) -> Result<(), TracefsError> {
    for expected in tracepoint.fields {
        let found = fields
            .iter()
            .find(|field| field.name == expected.name)
            .ok_or(TracefsError::MissingField {
                category: tracepoint.category,
                name: tracepoint.name,
                field: expected.name,
            })?;
        if found.offset != expected.offset || found.size != expected.size {
            return Err(TracefsError::Layout {
                category: tracepoint.category,
                name: tracepoint.name,
                field: expected.name,
                offset: expected.offset,
                size: expected.size,
                found_offset: found.offset,
                found_size: found.size,
            });
        }
    }
    Ok(())
}

/// Reads and verifies the `format` file of `tracepoint` under `tracefs`.
pub fn check_tracepoint(tracefs: &Path, tracepoint: &Tracepoint) -> Result<(), TracefsError> {
    let path = tracefs
        .join("events")
        .join(tracepoint.category)
        .join(tracepoint.name)
        .join("format");
    let text = fs::read_to_string(&path).map_err(|source| TracefsError::Format {
        category: tracepoint.category,
        name: tracepoint.name,
        path: path.clone(),
        source,
    })?;
    verify(tracepoint, &parse_format(&text))
}

#[cfg(test)]
mod tests {
    use loupe_common::layout::{TRACEPOINTS, inet_sock_set_state};

    use super::*;

    const INET_SOCK_SET_STATE: &str = "name: inet_sock_set_state
ID: 2287
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s protocol=%s\", REC->family
";

    fn tracepoint(name: &str) -> &'static Tracepoint {
        TRACEPOINTS.iter().find(|tp| tp.name == name).unwrap()
    }

    #[test]
    fn parses_names_offsets_and_sizes() {
        let fields = parse_format(INET_SOCK_SET_STATE);
        assert_eq!(fields.len(), 15);
        assert_eq!(
            fields[4],
            FormatField {
                name: "skaddr".into(),
                offset: 8,
                size: 8
            }
        );
        assert_eq!(fields[11].name, "saddr");
        assert_eq!(fields[14].offset, inet_sock_set_state::DADDR_V6);
    }

    #[test]
    fn accepts_the_expected_layout() {
        let fields = parse_format(INET_SOCK_SET_STATE);
        verify(tracepoint("inet_sock_set_state"), &fields).unwrap();
    }

    #[test]
    fn rejects_a_moved_field() {
        let moved = INET_SOCK_SET_STATE.replace("sport;\toffset:24", "sport;\toffset:26");
        let err = verify(tracepoint("inet_sock_set_state"), &parse_format(&moved)).unwrap_err();
        assert!(
            matches!(
                err,
                TracefsError::Layout {
                    field: "sport",
                    found_offset: 26,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_a_missing_field() {
        let missing = INET_SOCK_SET_STATE.replace("skaddr", "sk");
        let err = verify(tracepoint("inet_sock_set_state"), &parse_format(&missing)).unwrap_err();
        assert!(matches!(
            err,
            TracefsError::MissingField {
                field: "skaddr",
                ..
            }
        ));
    }

    #[test]
    fn finds_tracefs_mount_points() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
                      tracefs /sys/kernel/tracing tracefs rw,relatime 0 0\n\
                      debugfs /sys/kernel/debug debugfs rw 0 0\n\
                      short line\n";
        assert_eq!(
            mount_points(mounts, "tracefs"),
            [PathBuf::from("/sys/kernel/tracing")]
        );
        assert_eq!(
            mount_points(mounts, "debugfs"),
            [PathBuf::from("/sys/kernel/debug")]
        );
        assert!(mount_points("", "tracefs").is_empty());
    }

    #[test]
    fn garbage_yields_no_fields() {
        assert!(parse_format("field:;offset:x;size:\n\0\u{fffd}").is_empty());
        assert!(parse_format("").is_empty());
    }
}
