//! Which container and pod a process runs in, from its `/proc/PID/cgroup`.
//! Container runtimes name a container's cgroup after its 64-hex id
//! (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
//! `libpod-<id>.scope`, or a bare `<id>` directory), and the kubelet puts it
//! under its pod's cgroup (`pod<uid>` with the cgroupfs driver,
//! `kubepods-<class>-pod<uid_with_underscores>.slice` with systemd).
use crate::config::kubernetes::is_pod_uid;

/// A process's container, as far as its cgroup path tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Container {
    /// 64 lower-case hex digits.
    pub id: Option<String>,
    /// The pod's UID, lower-case, with dashes (`8-4-4-4-12`).
    pub pod_uid: Option<String>,
}

impl Container {
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.pod_uid.is_none()
    }
}

fn hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id a cgroup path component names, if any.
fn container_id(component: &str) -> Option<String> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    // crio's conmon (the monitor beside the container) is not the container.
    if name.contains("conmon") {
        return None;
    }
    let id = name.rsplit(['-', ':']).next()?;
    hex64(id).then(|| id.to_ascii_lowercase())
}

/// A pod UID in either spelling, normalised to the API's (dashes).
fn pod_uid(component: &str) -> Option<String> {
    let name = component.strip_suffix(".slice").unwrap_or(component);
    let uid = name.rsplit('-').next()?.strip_prefix("pod").or_else(|| {
        // cgroupfs keeps the dashes: `pod1b2c...-...`, one component.
        name.strip_prefix("pod")
    })?;
    let uid = uid.replace('_', "-").to_ascii_lowercase();
    is_pod_uid(&uid).then_some(uid)
}

/// The container of a process from the text of its `/proc/PID/cgroup`
/// (every hierarchy is looked at; cgroup v2 has one line, `0::PATH`).
pub fn parse(cgroup: &str) -> Container {
    let mut found = Container::default();
    for line in cgroup.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        for component in path.split('/') {
            if found.id.is_none() {
                found.id = container_id(component);
            }
            if found.pod_uid.is_none() {
                found.pod_uid = pod_uid(component);
            }
        }
        if found.id.is_some() && found.pod_uid.is_some() {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2b9e8d7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";
    const UID: &str = "1b2c3d4e-5f60-4a1b-9c2d-3e4f5a6b7c8d";

    #[test]
    fn runtimes_and_cgroup_drivers() {
        let systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{ID}.scope\n",
            UID.replace('-', "_")
        );
        let cgroupfs = format!("11:memory:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n");
        // Read from inside another container's cgroup namespace.
        let namespaced = format!(
            "0::/../../kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope\n",
            UID.replace('-', "_")
        );
        for text in [systemd, cgroupfs, namespaced] {
            assert_eq!(
                parse(&text),
                Container {
                    id: Some(ID.into()),
                    pod_uid: Some(UID.into())
                },
                "{text}"
            );
        }
        for text in [
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("0::/machine.slice/libpod-{ID}.scope/container"),
            format!("0::/kubepods.slice/crio-{}.scope", ID.to_uppercase()),
            format!("1:name=systemd:/docker/{ID}"),
        ] {
            assert_eq!(parse(&text).id.as_deref(), Some(ID), "{text}");
            assert_eq!(parse(&text).pod_uid, None);
        }
    }

    #[test]
    fn no_container_is_empty() {
        for text in [
            "0::/",
            "0::/user.slice/user-1000.slice/session-2.scope",
            "4:memory:/process_api/1f8b670033340467181d8608d9adae4c\n0::/",
            &format!("0::/kubepods.slice/crio-conmon-{ID}.scope"),
            "garbage",
            "",
            "0::/kubepods/pod1234/abc",
        ] {
            assert!(parse(text).is_empty(), "{text}");
        }
    }
}
