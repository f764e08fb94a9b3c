//! The pods of one node, from the API's `PodList` JSON: which pod a pod UID
//! is, and which container of which pod a container id is.
use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use serde::Deserialize;

/// The pod index the process scans read; replaced whole at each refresh.
#[derive(Clone, Default)]
pub struct SharedPods(Arc<RwLock<Arc<PodIndex>>>);

impl SharedPods {
    pub fn snapshot(&self) -> Arc<PodIndex> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn replace(&self, index: PodIndex) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
    }
}

/// A pod's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
}

/// Where a process runs, in Kubernetes terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement<'a> {
    pub pod: &'a Pod,
    /// The container's name, when its id is known.
    pub container: Option<&'a str>,
}

/// Pods by UID, containers by id.
#[derive(Clone, Debug, Default)]
pub struct PodIndex {
    pods: HashMap<String, Pod>,
    /// Container id -> (pod UID, container name).
    containers: HashMap<String, (String, String)>,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    metadata: Metadata,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize)]
struct Metadata {
    uid: String,
    namespace: String,
    name: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    init_container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    ephemeral_container_statuses: Vec<ContainerStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    /// `containerd://<id>`, `cri-o://<id>`, `docker://<id>`; absent while
    /// the container is being created.
    #[serde(default, rename = "containerID")]
    container_id: Option<String>,
}

impl PodIndex {
    /// Parses a `PodList` (the answer of `GET /api/v1/pods`).
    pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        let list: List = serde_json::from_slice(json)?;
        let mut index = Self::default();
        for item in list.items {
            let uid = item.metadata.uid.to_ascii_lowercase();
            let status = item.status;
            for c in status
                .container_statuses
                .into_iter()
                .chain(status.init_container_statuses)
                .chain(status.ephemeral_container_statuses)
            {
                if let Some(id) = c
                    .container_id
                    .as_deref()
                    .and_then(|id| id.rsplit("://").next())
                    && !id.is_empty()
                {
                    index
                        .containers
                        .insert(id.to_ascii_lowercase(), (uid.clone(), c.name));
                }
            }
            index.pods.insert(
                uid,
                Pod {
                    namespace: item.metadata.namespace,
                    name: item.metadata.name,
                },
            );
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The pod and container of a process whose cgroup named `container_id`
    /// and/or `pod_uid`.
    pub fn place(
        &self,
        container_id: Option<&str>,
        pod_uid: Option<&str>,
    ) -> Option<Placement<'_>> {
        let by_id = container_id.and_then(|id| self.containers.get(id));
        let uid = by_id.map(|(uid, _)| uid.as_str()).or(pod_uid)?;
        Some(Placement {
            pod: self.pods.get(uid)?,
            container: by_id.map(|(_, name)| name.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},
      "items":[
        {"metadata":{"name":"agent-api-7c9f-x2k","namespace":"agents","uid":"7D3C9A1E-2B4F-4E6A-8C0D-1F2E3A4B5C6D"},
         "spec":{"nodeName":"node-1"},
         "status":{"phase":"Running",
           "containerStatuses":[
             {"name":"api","containerID":"containerd://AB12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34","ready":true},
             {"name":"envoy","containerID":"containerd://ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56"}],
           "initContainerStatuses":[{"name":"migrate","containerID":"containerd://0000000000000000000000000000000000000000000000000000000000000001"}]}},
        {"metadata":{"name":"pending","namespace":"agents","uid":"11111111-2222-3333-4444-555555555555"},
         "status":{"phase":"Pending","containerStatuses":[{"name":"api"}]}}
      ]}"#;

    #[test]
    fn pods_and_containers_are_indexed() {
        let index = PodIndex::parse(LIST.as_bytes()).unwrap();
        assert_eq!(index.len(), 2);
        let api = "ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34ab12cd34";
        let placed = index.place(Some(api), None).unwrap();
        assert_eq!(placed.pod.name, "agent-api-7c9f-x2k");
        assert_eq!(placed.pod.namespace, "agents");
        assert_eq!(placed.container, Some("api"));
        // A container the API does not list yet: its pod still places it.
        let uid = "7d3c9a1e-2b4f-4e6a-8c0d-1f2e3a4b5c6d";
        let placed = index.place(Some(&"9".repeat(64)), Some(uid)).unwrap();
        assert_eq!(
            (placed.pod.name.as_str(), placed.container),
            ("agent-api-7c9f-x2k", None)
        );
        let init = "0000000000000000000000000000000000000000000000000000000000000001";
        assert_eq!(
            index.place(Some(init), None).unwrap().container,
            Some("migrate")
        );
        assert!(index.place(None, None).is_none());
        assert!(
            index
                .place(None, Some("00000000-0000-0000-0000-000000000000"))
                .is_none()
        );
    }

    #[test]
    fn malformed_lists_are_errors() {
        assert!(PodIndex::parse(b"not json").is_err());
        assert!(PodIndex::parse(br#"{"items":[{"metadata":{}}]}"#).is_err());
        assert!(PodIndex::parse(b"{}").unwrap().is_empty());
    }
}
