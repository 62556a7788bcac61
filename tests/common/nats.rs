//! A real nats-server cluster on loopback, for the JetStream engine's
//! tests: [`NatsCluster::start`] writes one config file per node into a
//! temporary directory (ports asked of the OS, JetStream on, routes to
//! every other node), starts the servers and waits until each one's
//! `/healthz` says JetStream is ready. Single nodes can be SIGKILLed and
//! restarted on their ports and store. Everything is killed and removed on
//! drop.
//!
//! The binary is `$NETLOG_NATS_SERVER`, or the one `./test.sh` unpacks
//! into `<target>/nats/<version>/nats-server`. Without one,
//! [`NatsCluster::start`] answers `None` and the test calls `skip`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The server version the tests are written for.
pub const NATS_SERVER_VERSION: &str = "2.15.1";
/// Longest a node may take to be ready after a start.
pub const NODE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The nats-server binary, if there is one.
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETLOG_NATS_SERVER") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let target = if target.is_relative() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(target)
    } else {
        target
    };
    let p = target
        .join("nats")
        .join(NATS_SERVER_VERSION)
        .join("nats-server");
    p.is_file().then_some(p)
}

/// `n` distinct ports the OS had free a moment ago. Each is held until all
/// are picked: one released at once could be handed out again at the next
/// bind (seen: one server's monitor and route port were the same).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

struct Node {
    name: String,
    client: u16,
    monitor: u16,
    conf: PathBuf,
    child: Option<Child>,
}

/// A running cluster. See the module docs.
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    dir: TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until all are ready; `None` without a
    /// binary.
    pub async fn start(n: usize) -> Option<NatsCluster> {
        NatsCluster::start_with(n, true).await
    }

    /// One node with JetStream off: a server the engine must refuse.
    pub async fn start_without_jetstream() -> Option<NatsCluster> {
        NatsCluster::start_with(1, false).await
    }

    async fn start_with(n: usize, jetstream: bool) -> Option<NatsCluster> {
        let binary = nats_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("netlog-nats-")
            .tempdir()
            .expect("create a temporary directory");
        let ports = free_ports(3 * n);
        let routes: Vec<u16> = ports[..n].to_vec();
        let mut nodes = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let (client, monitor) = (ports[n + 2 * i], ports[n + 2 * i + 1]);
            let others: Vec<String> = routes
                .iter()
                .filter(|r| *r != route)
                .map(|r| format!("nats-route://127.0.0.1:{r}"))
                .collect();
            let store = dir.path().join(&name);
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: netlog-test\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    others.join(", ")
                )
            } else {
                String::new()
            };
            let js = if jetstream {
                format!(
                    "jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 64MB\n  max_file_store: 2GB\n}}\n",
                    store.display()
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n{js}{cluster}"
            );
            let conf = dir.path().join(format!("{name}.conf"));
            std::fs::write(&conf, text).expect("write a node's config");
            nodes.push(Node {
                name,
                client,
                monitor,
                conf,
                child: None,
            });
        }
        let mut cluster = NatsCluster { binary, nodes, dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        Some(cluster)
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", node.name)))
            .expect("create a node's log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        node.child = Some(child);
    }

    /// Waits until node `i`'s `/healthz` answers 200 (JetStream ready).
    pub async fn wait_ready(&self, i: usize) {
        let url = format!("http://127.0.0.1:{}/healthz", self.nodes[i].monitor);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + NODE_READY_TIMEOUT;
        loop {
            let ok = http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} not ready within {NODE_READY_TIMEOUT:?}; its log:\n{}",
                self.nodes[i].name,
                self.log(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.nodes[i].name)))
            .unwrap_or_default()
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client)
    }

    /// The monitoring base URL of node `i`.
    pub fn monitor_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].monitor)
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The index of the node called `name` (`n1`...).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again (same ports, same store) and waits until it
    /// is ready.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// The `[engine]` tables of a netlog config pointing at this cluster.
    pub fn engine_toml(&self, publish_timeout: &str) -> String {
        let servers: Vec<String> = self.urls().iter().map(|u| format!("{u:?}")).collect();
        format!(
            "[engine]\nkind = \"jetstream\"\n[engine.jetstream]\nservers = [{}]\nreplicas = {}\n\
             publish_timeout = \"{publish_timeout}\"\n",
            servers.join(", "),
            self.nodes.len().min(3)
        )
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
