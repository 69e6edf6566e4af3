//! RUNES on one machine, as a user runs it: `viver node` with a roles file and the
//! README's example shell plugin (`tests/fixtures/runes/greeter.sh`), `viver roles`
//! showing it running, `viver ask` reaching it through the node, and the plugin killed
//! and restarted. Loopback only; no root needed.

mod net;

use net::Process;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The README's example roles file (the README test checks they agree).
const ROLES: &str = include_str!("fixtures/runes/roles.toml");

fn viver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_viver"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/runes-tmp").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn plugins_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runes")
}

/// `viver roles --json`, or None while the node does not answer.
fn roles_json(socket: &Path) -> Option<Value> {
    let out = viver().args(["roles", "--json", "--socket"]).arg(socket).output().ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

fn plugin<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["plugins"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no plugin {name} in {status:#}"))
}

/// Polls `viver roles --json` until `done` holds; panics with the node's log after `limit`.
fn wait_for(node: &mut Process, socket: &Path, limit: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = roles_json(socket) {
            if done(&status) {
                return status;
            }
        }
        if let Ok(Some(exit)) = node.child.try_wait() {
            panic!("viver node exited ({exit}) before {what}:\n{}", node.log_text());
        }
        assert!(Instant::now() < deadline, "not {what} within {limit:?}; status {:#?}\nlog:\n{}", roles_json(socket), node.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ask(socket: &Path, interface: &str, method: &str) -> (bool, String, String) {
    let out = viver().args(["ask", interface, method, "--socket"]).arg(socket).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn running(pid: u32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

#[test]
fn a_node_runs_the_shell_plugin_routes_to_it_and_restarts_it_when_killed() {
    let dir = scratch("local");
    let roles = dir.join("roles.toml");
    std::fs::write(&roles, ROLES).unwrap();
    let socket = dir.join("run/runes.sock");
    let mut command = viver();
    command
        .args(["node", "--role", "web", "--interface", "lo", "--name", "test-node", "--roles-file"])
        .arg(&roles)
        .arg("--plugins-dir")
        .arg(plugins_dir())
        .arg("--socket")
        .arg(&socket);
    let mut node = Process::spawn(command, &dir.join("node.log"));

    // Both plugins run, the shell one as its own process.
    let status = wait_for(&mut node, &socket, Duration::from_secs(20), "both plugins running", |s| {
        s["plugins"].as_array().is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["state"] == "running"))
    });
    assert_eq!(status["node"], "test-node");
    assert_eq!(status["roles"][0]["name"], "web");
    let greeter = plugin(&status, "greeter");
    assert_eq!(greeter["provides"], serde_json::json!(["greeting"]));
    assert_eq!(greeter["needs"], serde_json::json!(["ip-address"]));
    assert_eq!(plugin(&status, "ip-address")["kind"], "built-in");
    let first_pid = greeter["pid"].as_u64().expect("the shell plugin has a pid") as u32;
    assert!(running(first_pid));
    // Started in dependency order, and the plugin's stderr is in the node's log.
    let log = node.log_text();
    let (ip, gr) = (log.find("started plugin ip-address").unwrap(), log.find("started plugin greeter").unwrap());
    assert!(ip < gr, "{log}");
    assert!(log.contains("plugin greeter: greeter: node test-node has address 127.0.0.1"), "{log}");

    // The people's view names the role, the plugins and what they provide.
    let out = viver().args(["roles", "--socket"]).arg(&socket).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("role web") && text.contains("greeter") && text.contains("provides [greeting]"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("interface greeting") && l.contains("from greeter")), "{text}");

    // A request to the interface reaches the shell plugin, which asked ip-address at start.
    let (ok, answer, err) = ask(&socket, "greeting", "hello");
    assert!(ok, "{err}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["text"], "good evening from test-node at 127.0.0.1");
    assert_eq!(answer["pid"], first_pid);
    let (ok, _, err) = ask(&socket, "greeting", "goodbye");
    assert!(!ok && err.contains("greeter has only greeting.hello"), "{err}");

    // Killed, it comes back as a new process, and answers again.
    // SAFETY: kill of the plugin process this test's node started.
    unsafe { libc::kill(first_pid as i32, libc::SIGKILL) };
    let status = wait_for(&mut node, &socket, Duration::from_secs(20), "greeter restarted", |s| {
        let g = plugin(s, "greeter");
        g["state"] == "running" && g["restarts"] == 1
    });
    let second_pid = plugin(&status, "greeter")["pid"].as_u64().unwrap() as u32;
    assert_ne!(second_pid, first_pid);
    let (ok, answer, err) = ask(&socket, "greeting", "hello");
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap()["pid"], second_pid);
    assert!(node.log_text().contains(&format!("plugin greeter (pid {first_pid}) died")), "{}", node.log_text());

    // SIGTERM stops the node and its plugin, and takes the socket away.
    // SAFETY: a signal to the node this test started.
    unsafe { libc::kill(node.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = node.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "viver node did not stop on SIGTERM:\n{}", node.log_text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}\n{}", node.log_text());
    assert!(!running(second_pid), "the plugin outlived its node");
    assert!(!socket.exists());
}

#[test]
fn a_bad_roles_file_is_refused_with_its_line() {
    let dir = scratch("bad-roles");
    let roles = dir.join("roles.toml");
    std::fs::write(&roles, "[roles.web]\n[[roles.web.plugins]]\nname = \"greeter\"\nexec = \"greeter.sh\"\nsetings = {}\n").unwrap();
    let out =
        viver().args(["node", "--role", "web", "--roles-file"]).arg(&roles).arg("--socket").arg(dir.join("runes.sock")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{}:5:", roles.display())) && err.contains("unknown field `setings`"), "{err}");
}

#[test]
fn a_node_name_that_is_no_dns_label_is_refused() {
    let dir = scratch("bad-name");
    let out = viver().args(["node", "--role", "ip-address", "--name", "Web_1", "--socket"]).arg(dir.join("runes.sock")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("node name \"Web_1\" is not 1-63 of a-z"), "{err}");
}

#[test]
fn roles_without_a_node_says_so() {
    let dir = scratch("no-node");
    let out = viver().args(["roles", "--socket"]).arg(dir.join("runes.sock")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `viver node` running?"));
}

/// The README's example is what these tests run: the same script, line for line, and a
/// roles.toml that means the same as [`ROLES`].
#[test]
fn the_readme_shows_the_plugin_and_roles_file_these_tests_run() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let script = std::fs::read_to_string(plugins_dir().join("greeter.sh")).unwrap();
    let indented: String = script.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("    {l}\n") }).collect();
    assert!(readme.contains(&indented), "README.md does not show tests/fixtures/runes/greeter.sh as it is");
    let section = readme.split("### roles.toml\n").nth(1).and_then(|s| s.split("Each role lists").next()).expect("a roles.toml section");
    let shown: String = section.lines().map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l))).collect();
    let from_readme = viver::runes::roles::Roles::parse(&shown, "README.md").unwrap();
    assert_eq!(from_readme.roles, viver::runes::roles::Roles::parse(ROLES, "README.md").unwrap().roles);
}
