//! Every command block of README.md, run in order against the real `netlog`
//! binary, with its output checked where the README shows it: the README
//! cannot drift from the code.
//!
//! The conventions (also at the top of README.md, as an HTML comment):
//! - ```` ```sh ```` blocks run, in order, each in `bash -euo pipefail`, with
//!   the binary under test first on `PATH`. Variables and the working
//!   directory carry over from block to block, as in one terminal.
//! - A block whose first line is [`SKIP_MARK`] is not run; one whose first
//!   line is [`UNTIL_INTERRUPT`] is stopped with SIGINT after
//!   [`INTERRUPT_AFTER`] and checked on what it printed until then.
//! - A ```` ```text ```` block right after a `sh` block (blank lines between
//!   at most) is its expected output: each line appears in the output, in
//!   order, with `...` standing for any text within a line.
//! - `localhost:7200` is the broker this test starts; every other port written
//!   as `localhost:N` or `127.0.0.1:N` gets a free port of its own. All of
//!   them are rewritten to 127.0.0.1, so nothing leaves the machine. After a
//!   block that starts something in the background (a line ending in `&`),
//!   the test waits until the ports that block names accept connections.
//!
//! Cargo runs offline in the blocks (`CARGO_NET_OFFLINE`): the plugin
//! walkthrough builds from the crates `plugins/` already fetched, into a
//! target directory kept between runs under `CARGO_TARGET_TMPDIR`.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// First line of a `sh` block the test does not run.
const SKIP_MARK: &str = "# not run by tests/it/readme.rs:";
/// First line of a `sh` block that runs until it is interrupted.
const UNTIL_INTERRUPT: &str = "# runs until Ctrl-C";
/// How long a block that runs until Ctrl-C runs here.
const INTERRUPT_AFTER: Duration = Duration::from_secs(3);
/// Longest any one block may run (the plugin build is the long one).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(170);
/// Longest a port started by a background job may take to accept.
const PORT_TIMEOUT: Duration = Duration::from_secs(30);
/// The port the README's broker listens on.
const README_PORT: u16 = 7200;

/// How a `sh` block is run.
#[derive(Debug, PartialEq)]
enum Mode {
    Run,
    Skip,
    UntilInterrupt,
}

/// One `sh` block of the README.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    mode: Mode,
    script: String,
    expected: Option<String>,
}

/// The fenced blocks of `markdown`: (line, info string, body), with the
/// fence's indentation removed from the body.
fn fences(markdown: &str) -> Vec<(usize, String, String, usize)> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = lines[i].len() - trimmed.len();
            let start = i;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                let l = lines[i];
                let cut = l.len() - l.trim_start().len();
                body.push_str(&l[cut.min(indent)..]);
                body.push('\n');
                i += 1;
            }
            out.push((start + 1, info.trim().to_string(), body, i + 1));
        }
        i += 1;
    }
    out
}

/// The README's `sh` blocks with their modes and expected outputs.
fn sh_blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks: Vec<Block> = Vec::new();
    let mut last_sh_end: Option<usize> = None;
    for (line, info, body, end) in fences(markdown) {
        match info.split_whitespace().next().unwrap_or("") {
            "sh" => {
                let first = body.lines().next().unwrap_or("");
                let mode = if first.starts_with(SKIP_MARK) {
                    Mode::Skip
                } else if first.starts_with(UNTIL_INTERRUPT) {
                    Mode::UntilInterrupt
                } else {
                    Mode::Run
                };
                blocks.push(Block {
                    line,
                    mode,
                    script: body,
                    expected: None,
                });
                last_sh_end = Some(end);
            }
            "text" => {
                // Attached when only blank lines separate it from a sh block.
                if let Some(prev_end) = last_sh_end.take()
                    && lines[prev_end..line - 1]
                        .iter()
                        .all(|l| l.trim().is_empty())
                    && let Some(block) = blocks.last_mut()
                {
                    block.expected = Some(body);
                }
            }
            _ => last_sh_end = None,
        }
    }
    blocks
}

/// Whether `output` holds every line of `expected` in order (`...` stands
/// for any text within a line). On failure, the first line not found.
fn expect_lines(output: &str, expected: &str) -> Result<(), String> {
    let mut pos = 0;
    'lines: for want in expected
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
    {
        let pieces: Vec<&str> = want.split("...").collect();
        let mut search = pos;
        while let Some(found) = output[search..].find(pieces[0]).map(|i| search + i) {
            let mut at = found + pieces[0].len();
            let mut ok = true;
            for piece in &pieces[1..] {
                match output[at..].find(piece) {
                    Some(i) if !output[at..at + i].contains('\n') => at += i + piece.len(),
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                pos = at;
                continue 'lines;
            }
            search = found + 1;
        }
        return Err(want.to_string());
    }
    Ok(())
}

/// Every port the README writes as `localhost:N` or `127.0.0.1:N`, in
/// `text`.
fn ports_in(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for host in ["localhost:", "127.0.0.1:"] {
        for (i, _) in text.match_indices(host) {
            let digits: String = text[i + host.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(port) = digits.parse() {
                out.push(port);
            }
        }
    }
    out
}

/// `text` with every README port replaced by its test port, on 127.0.0.1.
fn rewrite_ports(text: &str, ports: &BTreeMap<u16, u16>) -> String {
    let mut out = text.to_string();
    for (readme, real) in ports {
        for host in ["localhost:", "127.0.0.1:"] {
            out = replace_port(
                &out,
                &format!("{host}{readme}"),
                &format!("127.0.0.1:{real}"),
            );
        }
    }
    out
}

/// Replaces `from` where no digit follows it (`:7200` but not `:72001`).
fn replace_port(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        out.push_str(&rest[..i]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The process groups of the blocks run so far; all are killed on drop, so
/// nothing a block started outlives the test.
#[derive(Default)]
struct Groups(Vec<u32>);

impl Groups {
    fn signal(&self, signal: &str) {
        for pgid in &self.0 {
            let _ = Command::new("kill")
                .args([signal, "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        self.signal("-TERM");
        std::thread::sleep(Duration::from_millis(300));
        self.signal("-KILL");
    }
}

/// What a block printed, and how it ended.
struct Outcome {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `script` as one block in `state` (the carried-over environment and
/// working directory), in a process group of its own.
fn run_block(script: &str, mode: &Mode, env: &BlockEnv, groups: &mut Groups) -> Outcome {
    let n = groups.0.len();
    let path = env.state.join(format!("block-{n}.sh"));
    let wrapped = format!(
        "set -a\n. \"$README_STATE/env\"\ncd \"$(cat \"$README_STATE/cwd\")\"\n\
         trap 'pwd > \"$README_STATE/cwd\"; export -p > \"$README_STATE/env\"' EXIT\n\
         set -euo pipefail\n{script}"
    );
    std::fs::write(&path, wrapped).expect("write the block's script");
    let out_path = env.state.join(format!("block-{n}.out"));
    let err_path = env.state.join(format!("block-{n}.err"));
    let mut child: Child = Command::new("bash")
        .arg(&path)
        .env("README_STATE", &env.state)
        .env("PATH", &env.path)
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", &env.cargo_target)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("start bash");
    groups.0.push(child.id());
    let limit = match mode {
        Mode::UntilInterrupt => INTERRUPT_AFTER,
        _ => BLOCK_TIMEOUT,
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll bash") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none() {
        let _ = Command::new("kill")
            .args(["-INT", "--", &format!("-{}", child.id())])
            .status();
        let grace = Instant::now() + Duration::from_secs(5);
        while Instant::now() < grace && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
    Outcome {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Where and how blocks run.
struct BlockEnv {
    /// Carried-over environment, working directory, scripts and outputs.
    state: std::path::PathBuf,
    path: String,
    cargo_target: std::path::PathBuf,
}

fn wait_for_port(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + PORT_TIMEOUT;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The README's blocks, followed verbatim (ports aside) against the real
/// binary: getting started, pub/sub, batches, streams and the plugin
/// walkthrough, with the outputs it shows.
#[tokio::test]
async fn readme_commands_work_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let blocks = sh_blocks(&readme);

    let data = data_dir();
    let broker = spawn_netlog(data.path()).await;
    let mut ports = BTreeMap::from([(README_PORT, broker.addr().port())]);
    for block in blocks.iter().filter(|b| b.mode != Mode::Skip) {
        for port in ports_in(&block.script) {
            ports.entry(port).or_insert_with(free_port);
        }
    }

    let home = data_dir();
    let state = home.path().join(".readme-state");
    let work = home.path().join("work");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::create_dir_all(&work).expect("work dir");
    std::fs::write(state.join("env"), "").expect("empty env");
    std::fs::write(state.join("cwd"), work.display().to_string()).expect("cwd");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_netlog"))
        .parent()
        .expect("the binary's directory");
    let env = BlockEnv {
        state,
        path: format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        cargo_target: Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-cargo"),
    };

    let mut groups = Groups::default();
    let mut ran = 0;
    for block in &blocks {
        if block.mode == Mode::Skip {
            continue;
        }
        let script = rewrite_ports(&block.script, &ports);
        let outcome = run_block(&script, &block.mode, &env, &mut groups);
        let report = || {
            format!(
                "README.md line {}:\n{}\n--- stdout:\n{}\n--- stderr:\n{}\n--- broker log:\n{}",
                block.line,
                block.script,
                outcome.stdout,
                outcome.stderr,
                broker.log()
            )
        };
        match (&block.mode, outcome.status) {
            (Mode::UntilInterrupt, None) => {}
            (Mode::UntilInterrupt, Some(s)) => {
                panic!("ended on its own ({s}) instead of running:\n{}", report())
            }
            (_, Some(s)) if s.success() => {}
            (_, status) => panic!("failed or timed out ({status:?}):\n{}", report()),
        }
        if let Some(expected) = &block.expected
            && let Err(line) = expect_lines(&outcome.stdout, expected)
        {
            panic!("expected output line {line:?} not found:\n{}", report());
        }
        if script.lines().any(|l| l.trim_end().ends_with('&')) {
            for port in ports_in(&script) {
                assert!(
                    wait_for_port(port),
                    "port {port} never opened:\n{}",
                    report()
                );
            }
        }
        ran += 1;
    }
    drop(groups);
    assert!(ran >= 12, "only {ran} README blocks ran");
}

/// The block reader sees fences, indentation, modes and expected outputs as
/// the README conventions say, and refuses output that does not match.
#[test]
fn block_reader_follows_the_conventions() {
    let md = "intro\n\n```sh\necho one\n```\n\n```text\none\n```\n\nprose\n\n\
              ```sh\n# not run by tests/it/readme.rs: slow\nsleep 600\n```\n\
              1. step\n   ```sh\n   # runs until Ctrl-C\n   cat <<'EOF'\n   x\n   EOF\n   ```\n\
              ```toml\na = 1\n```\n```text\nnot attached\n```\n";
    let blocks = sh_blocks(md);
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0].mode, Mode::Run);
    assert_eq!(blocks[0].expected.as_deref(), Some("one\n"));
    assert_eq!(blocks[1].mode, Mode::Skip);
    assert_eq!(blocks[2].mode, Mode::UntilInterrupt);
    assert_eq!(
        blocks[2].script,
        "# runs until Ctrl-C\ncat <<'EOF'\nx\nEOF\n"
    );
    assert!(
        blocks[2].expected.is_none(),
        "a text block after toml is prose"
    );

    let out = "{\"ok\":true}{\"offset\":0}\nid: 7\ndata: x\n";
    assert!(expect_lines(out, "{\"ok\":true}\n{\"offset\":...}\nid: 7\n").is_ok());
    assert_eq!(
        expect_lines(out, "id: 7\n{\"ok\":true}\n"),
        Err("{\"ok\":true}".into())
    );
    assert_eq!(
        expect_lines(out, "{\"ok\":...data\n"),
        Err("{\"ok\":...data".into())
    );
    assert_eq!(expect_lines(out, "absent\n"), Err("absent".into()));
}

/// Ports are rewritten to 127.0.0.1 and their test ports, whole numbers
/// only.
#[test]
fn ports_are_rewritten_to_loopback() {
    let ports = BTreeMap::from([(7200, 40001), (7201, 40002)]);
    let text = "curl localhost:7200/a; x=127.0.0.1:7201; y=localhost:72001";
    assert_eq!(ports_in(text), vec![7200, 7201]);
    assert_eq!(
        rewrite_ports(text, &ports),
        "curl 127.0.0.1:40001/a; x=127.0.0.1:40002; y=localhost:72001"
    );
}

/// The load-tool commands, which the README test does not run (release
/// builds, minutes of load), each point `--url` at the broker their block
/// starts.
#[test]
fn load_tool_commands_name_the_broker_they_start() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let mut checked = 0;
    for block in sh_blocks(&readme) {
        let Some(listen) = block
            .script
            .split_whitespace()
            .skip_while(|w| *w != "-listen")
            .nth(1)
        else {
            continue;
        };
        let url = format!("--url http://{listen}");
        for line in block.script.lines().filter(|l| l.contains("netlog-load")) {
            assert!(
                line.contains(&url),
                "README.md line {}: {line:?} lacks {url}",
                block.line
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "the load-tool commands are found ({checked})");
}
