//! TripleO workflow messages (the `tripleo-zaqar-messages` seed), on libqueue.
//!
//! ```sh
//! cargo run --release --example workflow_events
//! ```
//!
//! Every workflow posts to one well-known topic, `tripleo`, using the envelope
//! convention from the thread: the message name is the workflow's fully
//! qualified name, the `execution_id` header says which execution it belongs to,
//! the body is the data (`{"status": "RUNNING", ...}` ... `"SUCCESS"`).
//!
//! Four workflows run at once, each in its own thread with its own execution id.
//! The UI watches one execution: it subscribes a durable queue of its own with
//! `Filter::execution_id(id)`, and waits on the queue's file descriptor with
//! `poll(2)` (no polling loop: the thread sleeps in the kernel until a message is
//! there), then receives with `try_receive` until `None`. Halfway through, the
//! user refreshes the browser: the UI disconnects while the workflow keeps
//! posting; the subscription queue keeps what arrives. The new session finds the
//! queue again by its name, picks up the backlog and follows the execution live
//! to its end.
//!
//! Checks (exit status 1 if one fails): the UI got every message of its
//! execution exactly once and in order, and none of the other executions'; an
//! audit subscription (`Filter::All`) got every message of every execution, each
//! execution in order.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("workflow_events waits on the queue's eventfd: it needs Linux");
}

#[cfg(target_os = "linux")]
fn main() {
    START.get_or_init(std::time::Instant::now);
    match linux::run() {
        Ok(problems) if problems.is_empty() => println!("\nall checks passed"),
        Ok(problems) => {
            println!("\n{} check(s) FAILED:", problems.len());
            for p in &problems {
                println!("  - {p}");
            }
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("workflow_events: {e}");
            std::process::exit(1);
        }
    }
}

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

#[cfg(target_os = "linux")]
mod linux {
    use super::START;
    use libqueue::{Broker, Filter, Message, MessageView, Queue, QueueOptions, Topic};
    use std::collections::BTreeMap;
    use std::thread;
    use std::time::{Duration, Instant};

    /// The one topic every workflow posts to (the thread's default `tripleo` queue).
    const TOPIC: &str = "tripleo";
    /// An audit subscription that takes every message.
    const AUDIT: &str = "tripleo.audit";
    /// Pause between two messages of a workflow.
    const PACE: Duration = Duration::from_millis(3);
    /// The UI's first session reads this many messages, then the browser refreshes.
    const LIVE_BEFORE_REFRESH: usize = 12;
    /// How long the UI is away.
    const AWAY: Duration = Duration::from_millis(45);
    /// A wait on the descriptor longer than this is a failure.
    const STALL: Duration = Duration::from_secs(2);

    /// (workflow, messages it posts, its final status, what its steps say).
    const WORKFLOWS: [(&str, usize, &str, &[&str]); 4] = [
        (
            "tripleo.plan_management.v1.create_deployment_plan",
            18,
            "SUCCESS",
            &[
                "uploading templates",
                "processing roles",
                "generating passwords",
            ],
        ),
        (
            "tripleo.deployment.v1.deploy_plan",
            40,
            "SUCCESS",
            &[
                "stack update in progress",
                "ControllerDeployment_Step1 CREATE_COMPLETE",
                "ComputeDeployment_Step2 CREATE_COMPLETE",
                "config-download: ansible task done",
            ],
        ),
        (
            "tripleo.validations.v1.run_validation",
            24,
            "FAILED",
            &[
                "checking ntp",
                "checking undercloud ram",
                "checking ceph pools",
            ],
        ),
        (
            "tripleo.baremetal.v1.introspect",
            30,
            "SUCCESS",
            &[
                "powering on node",
                "waiting for ironic-inspector",
                "node introspected",
            ],
        ),
    ];
    /// The execution the UI watches (index into WORKFLOWS).
    const WATCHED: usize = 1;

    fn ms() -> f64 {
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }

    macro_rules! log {
        ($($arg:tt)*) => {
            println!("[{:>6.1} ms] {}", ms(), format!($($arg)*))
        };
    }

    /// A uuid-looking execution id (xorshift from the clock and the workflow's index).
    fn execution_id(i: usize) -> String {
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ ((i as u64 + 1) * 0x9e37_79b9_7f4a_7c15);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (a, b) = (next(), next());
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }

    /// The `"step": N` of a body.
    fn step_of(body: &str) -> Option<usize> {
        let rest = &body[body.find("\"step\": ")? + 8..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// The `"key": "value"` string of a body.
    fn str_field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
        let pat = format!("\"{key}\": \"");
        let rest = &body[body.find(&pat)? + pat.len()..];
        rest.find('"').map(|end| &rest[..end])
    }

    /// One workflow execution posting its progress to the topic.
    fn workflow(topic: Topic, w: usize, exec: String) -> libqueue::Result<usize> {
        let (name, total, end, says) = WORKFLOWS[w];
        for step in 1..=total {
            let (status, message) = if step == total {
                (end, format!("workflow finished: {end}"))
            } else if step == 1 {
                ("RUNNING", "workflow started".to_string())
            } else {
                ("RUNNING", says[step % says.len()].to_string())
            };
            let data = format!(
                r#"{{"status": "{status}", "step": {step}, "total": {total}, "message": "{message}"}}"#
            );
            topic.publish(Message::envelope(name, exec.as_str(), data))?;
            if step < total {
                thread::sleep(PACE);
            }
        }
        Ok(total)
    }

    /// What a UI session saw.
    #[derive(Default)]
    struct Session {
        /// (step, status, execution id, name) of each message, in arrival order.
        got: Vec<(usize, String, String, String)>,
        /// Times `poll` returned, and of those, times no message was there.
        wakeups: usize,
        empty_wakeups: usize,
        /// Whether it saw the execution's last message.
        finished: bool,
        /// A stall or an error, if any.
        trouble: Option<String>,
    }

    /// Waits until `fd` is readable (or `timeout`); false on timeout.
    fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) -> std::io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: `pfd` is a valid, initialized pollfd that lives across the
            // call, and the count (1) matches it.
            let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
            if r >= 0 {
                return Ok(r > 0);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// A UI session on the subscription queue: waits on its descriptor, drains it
    /// with `try_receive`, and stops after `limit` messages (the browser
    /// refreshes) or at the execution's last message.
    fn ui_session(label: &str, q: &Queue, total: usize, limit: Option<usize>) -> Session {
        let mut s = Session::default();
        let fd = match q.fd() {
            Ok(fd) => fd,
            Err(e) => {
                s.trouble = Some(format!("{label}: no descriptor: {e}"));
                return s;
            }
        };
        log!(
            "{label}: waiting on fd {fd} of queue {} with poll(2)",
            q.name()
        );
        loop {
            match wait_readable(fd, STALL) {
                Ok(true) => {}
                Ok(false) => {
                    s.trouble = Some(format!("{label}: nothing arrived for {STALL:?}"));
                    return s;
                }
                Err(e) => {
                    s.trouble = Some(format!("{label}: poll: {e}"));
                    return s;
                }
            }
            s.wakeups += 1;
            let mut batch = 0;
            loop {
                if limit.is_some_and(|l| s.got.len() >= l) {
                    log!("{label}: the user refreshes the browser: disconnecting");
                    return s;
                }
                let d = match q.try_receive() {
                    Ok(Some(d)) => d,
                    Ok(None) => break,
                    Err(e) => {
                        s.trouble = Some(format!("{label}: receive: {e}"));
                        return s;
                    }
                };
                batch += 1;
                let body = String::from_utf8_lossy(d.body()).into_owned();
                let step = step_of(&body).unwrap_or(0);
                let status = str_field(&body, "status").unwrap_or("?").to_string();
                log!(
                    "{label}: {:>2}/{total} {:<8} {} ({})",
                    step,
                    status,
                    str_field(&body, "message").unwrap_or("?"),
                    if batch == 1 {
                        "woken by poll"
                    } else {
                        "same wakeup"
                    }
                );
                s.got.push((
                    step,
                    status,
                    d.execution_id().unwrap_or("").to_string(),
                    d.name().unwrap_or("").to_string(),
                ));
                if let Err(e) = d.ack() {
                    s.trouble = Some(format!("{label}: ack: {e}"));
                    return s;
                }
                if step == total {
                    s.finished = true;
                }
            }
            if batch == 0 {
                s.empty_wakeups += 1;
            }
            if s.finished {
                log!("{label}: the execution is over");
                return s;
            }
        }
    }

    pub fn run() -> libqueue::Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(what);
            }
        };

        let broker = Broker::new();
        let ns = broker.default_namespace()?;
        let topic = ns.topic(TOPIC)?;
        let audit = topic.subscribe(AUDIT, Filter::All)?;
        let execs: Vec<String> = (0..WORKFLOWS.len()).map(execution_id).collect();
        for (w, e) in execs.iter().enumerate() {
            println!("  execution {e}  {}", WORKFLOWS[w].0);
        }
        let watched = execs[WATCHED].clone();
        let (wf_name, total, wf_end, _) = WORKFLOWS[WATCHED];

        // The UI's durable subscription: a queue of its own, named after the
        // execution, so a new session finds it again.
        let ui_queue = format!("ui.{watched}");
        ns.create_queue(
            &ui_queue,
            QueueOptions::default()
                .lease_time(Duration::from_secs(30))
                .default_ttl(Duration::from_secs(3600)),
        )?;
        let q = topic.subscribe(&ui_queue, Filter::execution_id(watched.as_str()))?;
        log!("UI subscribed queue {ui_queue} to topic {TOPIC} with Filter::execution_id");

        // The workflows start.
        let started = Instant::now();
        let workers: Vec<_> = execs
            .iter()
            .enumerate()
            .map(|(w, e)| {
                let (t, e) = (topic.clone(), e.clone());
                thread::Builder::new()
                    .name(format!("workflow-{w}"))
                    .spawn(move || workflow(t, w, e))
                    .expect("spawn a workflow")
            })
            .collect();
        log!(
            "{} workflows started, posting to topic {TOPIC}",
            workers.len()
        );

        // Session 1: follows the execution live, then the browser refreshes.
        let s1 = {
            let q = q.clone();
            thread::Builder::new()
                .name("ui-session-1".into())
                .spawn(move || ui_session("session 1", &q, total, Some(LIVE_BEFORE_REFRESH)))
                .expect("spawn session 1")
                .join()
                .expect("session 1")
        };
        drop(q); // the old session's handle is gone
        let left_at = Instant::now();
        thread::sleep(AWAY);
        let waiting = ns.get_queue(&ui_queue)?.stats().ready;
        log!(
            "UI back after {:.0} ms away: {waiting} message(s) of the execution waited in {ui_queue}",
            left_at.elapsed().as_secs_f64() * 1e3
        );

        // Session 2: a fresh page finds the queue by name and catches up.
        let s2 = thread::Builder::new()
            .name("ui-session-2".into())
            .spawn({
                let ns = ns.clone();
                let name = ui_queue.clone();
                move || match ns.get_queue(&name) {
                    Ok(q) => ui_session("session 2", &q, total, None),
                    Err(e) => Session {
                        trouble: Some(format!("session 2: {e}")),
                        ..Session::default()
                    },
                }
            })
            .expect("spawn session 2")
            .join()
            .expect("session 2");

        let mut posted = Vec::new();
        for w in workers {
            match w.join() {
                Ok(r) => posted.push(r?),
                Err(_) => {
                    check(false, "a workflow thread panicked".into());
                    posted.push(0);
                }
            }
        }
        let elapsed = started.elapsed();
        log!("all workflows done");

        // The UI is done with the execution: it drops its subscription.
        topic.unsubscribe(&ui_queue)?;
        let late = topic.publish(Message::envelope(
            wf_name,
            watched.as_str(),
            r#"{"status": "SUCCESS", "step": 0, "message": "after unsubscribe"}"#,
        ))?;
        let ui_stats = ns.get_queue(&ui_queue)?.stats();
        ns.delete_queue(&ui_queue)?;
        log!("UI unsubscribed and deleted {ui_queue}");

        // ---- checks -----------------------------------------------------------------
        for s in [&s1, &s2] {
            if let Some(t) = &s.trouble {
                check(false, t.clone());
            }
        }
        let got: Vec<_> = s1.got.iter().chain(&s2.got).collect();
        let steps: Vec<usize> = got.iter().map(|g| g.0).collect();
        let expected: Vec<usize> = (1..=total).collect();
        let foreign = got
            .iter()
            .filter(|g| g.2 != watched || g.3 != wf_name)
            .count();
        check(
            steps == expected,
            format!("the UI got steps {steps:?}, expected 1..={total} once each, in order"),
        );
        check(
            foreign == 0,
            format!("the UI got {foreign} message(s) of other executions"),
        );
        check(
            s1.got.len() == LIVE_BEFORE_REFRESH,
            format!(
                "session 1 read {} messages, expected {LIVE_BEFORE_REFRESH}",
                s1.got.len()
            ),
        );
        check(
            got.last().map(|g| g.1.as_str()) == Some(wf_end),
            format!(
                "the last status was {:?}, expected {wf_end}",
                got.last().map(|g| &g.1)
            ),
        );
        check(
            ui_stats.sent == total as u64
                && ui_stats.acked == total as u64
                && ui_stats.redelivered == 0
                && ui_stats.depth() == 0,
            format!("the UI queue's stats {ui_stats:?}"),
        );
        check(
            late == 1,
            format!("a message after unsubscribe reached {late} subscriptions, expected 1 (audit)"),
        );

        // The audit subscription saw everything, each execution in order.
        let mut per_exec: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut last_status: BTreeMap<String, String> = BTreeMap::new();
        while let Some(d) = audit.try_receive()? {
            let body = String::from_utf8_lossy(d.body()).into_owned();
            per_exec
                .entry(d.execution_id().unwrap_or("-").to_string())
                .or_default()
                .push(step_of(&body).unwrap_or(0));
            if let (Some(e), Some(st)) = (d.execution_id(), str_field(&body, "status")) {
                if step_of(&body) != Some(0) {
                    last_status.insert(e.to_string(), st.to_string());
                }
            }
            d.ack()?;
        }
        println!("\nsummary ({:.1} ms):", elapsed.as_secs_f64() * 1e3);
        println!(
            "  {:<50} {:<36} {:>6} {:>7}  final",
            "workflow", "execution id", "posted", "audited"
        );
        for (w, e) in execs.iter().enumerate() {
            let mut seen = per_exec.remove(e).unwrap_or_default();
            if w == WATCHED {
                // The message posted after the UI unsubscribed (step 0). It came
                // from another thread (main), so it may be delivered before the
                // workflow's: order holds per producer only.
                let before = seen.len();
                seen.retain(|&step| step != 0);
                check(
                    before - seen.len() == 1,
                    format!(
                        "audit got {} copies of the message sent after unsubscribe",
                        before - seen.len()
                    ),
                );
            }
            let want: Vec<usize> = (1..=posted[w]).collect();
            println!(
                "  {:<50} {e} {:>6} {:>7}  {}{}",
                WORKFLOWS[w].0,
                posted[w],
                seen.len(),
                last_status.get(e).map_or("-", String::as_str),
                if w == WATCHED {
                    "  <- watched by the UI"
                } else {
                    ""
                }
            );
            check(
                seen == want,
                format!(
                    "audit: execution {e} steps {seen:?}, expected 1..={}",
                    posted[w]
                ),
            );
        }
        for (w, e) in execs.iter().enumerate() {
            let st = last_status.get(e).map_or("-", String::as_str);
            check(
                st == WORKFLOWS[w].2,
                format!(
                    "audit: execution {e} ended {st}, expected {}",
                    WORKFLOWS[w].2
                ),
            );
        }
        check(
            per_exec.is_empty(),
            format!("audit: unknown executions {:?}", per_exec.keys()),
        );
        let total_posted: usize = posted.iter().sum();
        println!(
            "  UI ({wf_name}): {} message(s) live in session 1, {} in session 2 \
             ({waiting} kept while away); {total}/{total} received, in order, none foreign",
            s1.got.len(),
            s2.got.len()
        );
        println!(
            "  UI wakeups: poll returned {} times for {} messages ({} with nothing to receive)",
            s1.wakeups + s2.wakeups,
            got.len(),
            s1.empty_wakeups + s2.empty_wakeups
        );
        println!(
            "  topic {TOPIC}: {total_posted} messages from {} executions; the UI's queue took {} of them",
            execs.len(),
            ui_stats.sent
        );
        Ok(problems)
    }
}
