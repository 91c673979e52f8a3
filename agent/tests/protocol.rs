//! The agent binary over pipes, as the controller drives it over SSH.

use serverware_shared::agent::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Agent {
    child: Child,
    stdin: ChildStdin,
    frames: mpsc::Receiver<AgentFrame>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent run as a host would run it, but in a PID and mount namespace of its own with a
/// private `/var/lib/serverware`: the guard it starts (which outlives an agent by design) ends
/// with the namespace, and nothing is written to this machine's directory.
fn agent_command() -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount",
        "--mount-proc",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mkdir -p /var/lib/serverware && mount -t tmpfs agent-test /var/lib/serverware && exec \"$0\"",
        env!("CARGO_BIN_EXE_serverware-agent"),
    ]);
    c
}

fn start() -> Agent {
    let mut child = agent_command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, frames) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let frame: AgentFrame =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad frame {line}: {e}"));
            if tx.send(frame).is_err() {
                break;
            }
        }
    });
    Agent {
        child,
        stdin,
        frames,
    }
}

impl Agent {
    fn send(&mut self, id: u64, request: AgentRequest) {
        let line = serde_json::to_string(&AgentRequestFrame { id, request }).unwrap();
        writeln!(self.stdin, "{line}").unwrap();
    }
    fn next(&self) -> AgentFrame {
        self.frames
            .recv_timeout(Duration::from_secs(30))
            .expect("a frame within 30 s")
    }
    fn response(&self, want: u64) -> AgentResponse {
        loop {
            if let AgentFrame::Response { id, response } = self.next() {
                assert_eq!(id, want);
                return response;
            }
        }
    }
    fn sample(&self) -> HostSample {
        loop {
            if let AgentFrame::Sample { sample } = self.next() {
                return sample;
            }
        }
    }
}

#[test]
fn hello_then_samples_of_this_host() {
    let mut a = start();
    a.send(
        1,
        AgentRequest::Hello {
            protocol: PROTOCOL_VERSION,
        },
    );
    match a.response(1) {
        AgentResponse::Hello {
            protocol,
            cpus,
            kernel,
            ..
        } => {
            assert_eq!(protocol, PROTOCOL_VERSION);
            assert!(cpus >= 1);
            assert!(!kernel.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let s = a.sample();
    assert!(!s.cpus.is_empty());
    assert!(s.memory.total > 0 && s.memory.used <= s.memory.total);
    assert!(s.interfaces.iter().any(|i| i.name == "lo"));
    assert!(s
        .filesystems
        .iter()
        .any(|f| f.mount_point == "/" && f.size_bytes > 0));
    for c in &s.cpus {
        let sum = c.user + c.nice + c.system + c.iowait + c.irq + c.softirq + c.idle;
        assert!(sum == 0.0 || (sum - 100.0).abs() < 0.5, "{c:?}");
    }
    assert!(s.uptime_secs > 0);

    // A faster interval takes effect; a bad one is refused with a message.
    a.send(2, AgentRequest::SetInterval { millis: 200 });
    assert_eq!(a.response(2), AgentResponse::Ok);
    let t0 = Instant::now();
    for _ in 0..5 {
        a.sample();
    }
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "5 samples at 200 ms took {:?}",
        t0.elapsed()
    );
    a.send(3, AgentRequest::SetInterval { millis: 5 });
    assert!(matches!(a.response(3), AgentResponse::Error { .. }));
    a.send(4, AgentRequest::Ping);
    assert_eq!(a.response(4), AgentResponse::Pong);
    writeln!(a.stdin, "this is not json").unwrap();
    assert!(matches!(a.response(0), AgentResponse::Error { .. }));
    a.send(5, AgentRequest::Shutdown);
    assert_eq!(a.response(5), AgentResponse::Ok);
    let status = a.child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn the_agent_exits_when_its_controller_goes_away() {
    let mut child = agent_command()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.as_mut().unwrap(),
        r#"{{"id":1,"type":"hello","protocol":1}}"#
    )
    .unwrap();
    drop(child.stdin.take());
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(status) => assert!(status.unwrap().success()),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the agent outlived its input");
        }
    }
}

/// A spec every rule accepts, naming a bridge this machine does not have: should a hostile
/// value ever pass the agent's checks, the agent stops at the bridge and writes nothing.
fn base_spec() -> VpsSpec {
    VpsSpec {
        name: "sw-protocol-probe".into(),
        hostname: "sw-protocol-probe".into(),
        ipv4: "10.77.250.50".into(),
        prefix_len: 24,
        gateway: Some("10.77.250.1".into()),
        bridge: "swnobridge0".into(),
        mac: "02:53:57:00:00:01".into(),
        veth: "swvprobe".into(),
        memory_limit_bytes: 64 << 20,
        cpu_shares: None,
        cpu_limit_millis: None,
        autostart: false,
        id_base: Some(16 << 16),
    }
}

#[test]
fn every_configuration_bound_field_with_a_hostile_value_is_refused_by_the_agent_itself() {
    let mut a = start();
    let hostile = [
        "web\nlxc.hook.pre-start = /bin/sh -c 'touch /tmp/owned'".to_string(),
        "web=1".to_string(),
        "web\0x".to_string(),
        "w".repeat(10 * 1024),
        " web".to_string(),
    ];
    type Set = fn(&mut VpsSpec, String);
    let fields: [(&str, Set); 7] = [
        ("name", |s, v| s.name = v),
        ("hostname", |s, v| s.hostname = v),
        ("ipv4", |s, v| s.ipv4 = format!("10.77.250.50{v}")),
        ("gateway", |s, v| {
            s.gateway = Some(format!("10.77.250.1{v}"))
        }),
        ("bridge", |s, v| s.bridge = v),
        ("mac", |s, v| s.mac = format!("02:53:57:00:00:01{v}")),
        ("veth", |s, v| s.veth = v),
    ];
    let mut id = 10;
    for (field, set) in fields {
        for value in &hostile {
            let mut spec = base_spec();
            set(&mut spec, value.clone());
            for request in [
                AgentRequest::VpsDefine { spec: spec.clone() },
                AgentRequest::VpsApplyLimits { spec: spec.clone() },
            ] {
                id += 1;
                a.send(id, request);
                match a.response(id) {
                    AgentResponse::Error { message } => assert!(
                        message.starts_with(&format!("{field}:")),
                        "{field} = {value:?}: {message}"
                    ),
                    other => panic!("{field} = {value:?} was accepted: {other:?}"),
                }
            }
        }
    }
    // The name travels alone in the other requests, and the same rule guards it.
    for value in &hostile {
        for request in [
            AgentRequest::VpsStart {
                name: value.clone(),
            },
            AgentRequest::VpsStop {
                name: value.clone(),
                timeout_secs: 1,
            },
            AgentRequest::VpsDestroy {
                name: value.clone(),
            },
            AgentRequest::VpsFreeze {
                name: value.clone(),
                frozen: true,
            },
        ] {
            id += 1;
            a.send(id, request.clone());
            assert!(
                matches!(a.response(id), AgentResponse::Error { .. }),
                "{request:?} was accepted"
            );
        }
    }
    for timeout_secs in [0, 601, u32::MAX] {
        id += 1;
        a.send(
            id,
            AgentRequest::VpsStop {
                name: "sw-protocol-probe".into(),
                timeout_secs,
            },
        );
        match a.response(id) {
            AgentResponse::Error { message } => {
                assert!(message.starts_with("timeout_secs:"), "{message}")
            }
            other => panic!("a stop timeout of {timeout_secs} s was accepted: {other:?}"),
        }
    }
    assert!(
        !std::path::Path::new("/var/lib/lxc/sw-protocol-probe").exists(),
        "the agent wrote a configuration"
    );
}

#[test]
fn an_overlong_request_line_is_refused_and_the_agent_goes_on() {
    let mut a = start();
    let huge = format!(
        r#"{{"id":1,"type":"vps_start","name":"{}"}}"#,
        "a".repeat(MAX_REQUEST_LINE * 4)
    );
    writeln!(a.stdin, "{huge}").unwrap();
    match a.response(0) {
        AgentResponse::Error { message } => assert!(message.contains("longer than"), "{message}"),
        other => panic!("{other:?}"),
    }
    a.send(2, AgentRequest::Ping);
    assert_eq!(a.response(2), AgentResponse::Pong);
}
