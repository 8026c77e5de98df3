//! A real in-memory workload through libqueue, all in Rust
//! (`cargo run --release --example demo`; `make demo` runs the tour,
//! examples/python/tour.py, which adds C++, Python, persistence and a crash).
//!
//! One broker, two tenants ("octavia" and "tripleo") with their own queues,
//! producer threads sending named messages with headers and priorities, and a
//! pool of consumer threads per queue that receive (blocking, with a timeout),
//! dispatch on the message name and ack. Along the way it shows, and then checks,
//! the delivery semantics:
//!
//! - a poison message is nacked, redelivered (delivery 2, 3) and then moved to the
//!   dead-letter queue, where it is read back with its `x-dead-letter-reason`;
//! - a worker "crashes" holding a message: its 200 ms lease runs out and another
//!   worker gets the message again (delivery 2);
//! - a priority-9 message overtakes messages sent before it;
//! - a tiny third tenant hits its `max_messages` quota while the others go on.
//!
//! At the end it prints per-queue and per-namespace statistics and the rate, and
//! exits with status 1 if the numbers do not add up.

use libqueue::Nanos;
use libqueue::{
    Broker, Clock, Delivery, Error, Message, MessageView, Namespace, OnFull, Queue, QueueOptions,
    QueueStats, Quotas,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

// ---- the workload ---------------------------------------------------------------

/// Producers on octavia/provisioning and messages each sends.
const OCTAVIA_PRODUCERS: usize = 3;
const OCTAVIA_PER_PRODUCER: usize = 40_000;
/// Producers on tripleo/workflow-events and messages each sends.
const TRIPLEO_PRODUCERS: usize = 2;
const TRIPLEO_PER_PRODUCER: usize = 38_000;
/// Heartbeats sent to octavia/amphora-health (one producer).
const HEARTBEATS: usize = 4_000;

/// Consumer pool sizes: at most this many messages of a queue are handled at once.
const PROVISIONING_WORKERS: usize = 4;
const WORKFLOW_WORKERS: usize = 3;
const HEALTH_WORKERS: usize = 2;

/// How long an idle worker waits in `receive_timeout` before it checks whether
/// the producers are done and its queue is drained.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Lease time of octavia/amphora-health: the crashed worker's message comes back
/// after this long.
const SHORT_LEASE: Duration = Duration::from_millis(200);
/// Nothing in the demo may run longer than this (it takes well under 2 s).
const WATCHDOG: Duration = Duration::from_secs(8);

const OCTAVIA_NAMES: [&str; 6] = [
    "create_load_balancer",
    "update_listener",
    "create_pool",
    "create_member",
    "update_health_monitor",
    "delete_load_balancer",
];
const TRIPLEO_NAMES: [&str; 5] = [
    "deployment_started",
    "ansible_task_completed",
    "stack_update_progress",
    "config_download_finished",
    "deployment_finished",
];

// ---- small shared helpers -------------------------------------------------------

static START: OnceLock<Instant> = OnceLock::new();

fn since_start() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

/// Prints a line prefixed with the time since the demo started.
macro_rules! log {
    ($($arg:tt)*) => {
        println!("[{:>7.1} ms] {}", since_start().as_secs_f64() * 1e3, format!($($arg)*))
    };
}

/// Problems found while running; any of them makes the demo exit with status 1.
#[derive(Default)]
struct Problems(Mutex<Vec<String>>);

impl Problems {
    fn add(&self, p: impl Into<String>) {
        let p = p.into();
        println!("  !! {p}");
        self.0.lock().unwrap().push(p);
    }
    fn list(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A tiny deterministic generator (xorshift), so runs are alike without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// "Work": a checksum of the body (FNV-1a), so handlers read what they receive.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---- consumers ------------------------------------------------------------------

/// What a consumer pool saw, merged from its workers when they stop.
#[derive(Default)]
struct PoolReport {
    by_name: BTreeMap<String, u64>,
    by_priority: BTreeMap<u8, u64>,
    acked: u64,
    missing_execution_id: u64,
}

/// One consumer pool: `size` workers on one queue.
struct Pool {
    label: String,
    queue: Queue,
    size: usize,
    /// Handlers running right now, and the most ever seen at once.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// Time (since start) of the last ack, for the rate.
    last_ack: AtomicU64,
    report: Mutex<PoolReport>,
}

/// Shared by every thread of the demo.
struct World {
    producers_done: AtomicBool,
    problems: Problems,
    /// Delivery counts seen for the poison message, in order.
    poison_deliveries: Mutex<Vec<u32>>,
    /// The broker's clock: lease deadlines are read on it.
    clock: Arc<dyn Clock>,
    /// (worker, message id, lease deadline) of the crash, and (worker, message id,
    /// delivery count, clock time) of the redelivery after it.
    crash: Mutex<Option<(usize, u64, Nanos)>>,
    recovery: Mutex<Option<(usize, u64, u32, Nanos)>>,
}

enum Outcome {
    Done,
    Failed(String),
}

/// Dispatches on the message name, as a service's RPC/notification endpoint would.
fn handle(d: &Delivery) -> Outcome {
    let work = || {
        std::hint::black_box(checksum(d.body()));
        Outcome::Done
    };
    match d.name() {
        Some("create_load_balancer") => match d.header_str("flavor") {
            Some("broken") => Outcome::Failed("flavor \"broken\" does not exist".into()),
            _ => work(),
        },
        Some(
            "update_listener"
            | "create_pool"
            | "create_member"
            | "update_health_monitor"
            | "delete_load_balancer",
        ) => work(),
        Some(
            "deployment_started"
            | "ansible_task_completed"
            | "stack_update_progress"
            | "config_download_finished"
            | "deployment_finished"
            | "stack_failed",
        ) => work(),
        Some("amphora_heartbeat" | "failover_amphora") => work(),
        other => Outcome::Failed(format!("no handler for {other:?}")),
    }
}

fn spawn_worker(world: Arc<World>, pool: Arc<Pool>, worker: usize) -> JoinHandle<()> {
    thread::Builder::new()
        .name(format!("{}-{worker}", pool.label))
        .spawn(move || {
            let mut local = PoolReport::default();
            loop {
                if since_start() > WATCHDOG {
                    world
                        .problems
                        .add(format!("{}: worker {worker} gave up (watchdog)", pool.label));
                    break;
                }
                let d = match pool.queue.receive_timeout(IDLE_WAIT) {
                    Ok(Some(d)) => d,
                    Ok(None) => {
                        // Idle: stop once nothing more can come.
                        if world.producers_done.load(SeqCst) && pool.queue.stats().depth() == 0 {
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        world
                            .problems
                            .add(format!("{}: receive failed: {e}", pool.label));
                        break;
                    }
                };
                let now_in_flight = pool.in_flight.fetch_add(1, SeqCst) + 1;
                pool.peak_in_flight.fetch_max(now_in_flight, SeqCst);

                // The lease demo: the first delivery of the failover request kills its worker.
                if d.name() == Some("failover_amphora") && d.delivery_count() == 1 {
                    log!(
                        "{}: worker {worker} CRASHES holding message #{} ({:?}), no ack; its {} ms lease will run out",
                        pool.label,
                        d.id(),
                        d.name().unwrap_or(""),
                        SHORT_LEASE.as_millis()
                    );
                    let deadline = d.lease_deadline().unwrap_or(0);
                    *world.crash.lock().unwrap() = Some((worker, d.id(), deadline));
                    drop(d);
                    pool.in_flight.fetch_sub(1, SeqCst);
                    merge(&pool, local);
                    return;
                }
                if d.name() == Some("failover_amphora") {
                    log!(
                        "{}: worker {worker} got message #{} again, delivery_count {} -> handled, acked",
                        pool.label,
                        d.id(),
                        d.delivery_count()
                    );
                    *world.recovery.lock().unwrap() =
                        Some((worker, d.id(), d.delivery_count(), world.clock.now()));
                }

                match handle(&d) {
                    Outcome::Done => {
                        *local.by_name.entry(d.name().unwrap_or("-").into()).or_default() += 1;
                        *local.by_priority.entry(d.priority()).or_default() += 1;
                        if d.header_str("execution_id").is_none() {
                            local.missing_execution_id += 1;
                        }
                        match d.ack() {
                            Ok(()) => local.acked += 1,
                            Err(e) => world
                                .problems
                                .add(format!("{}: ack failed: {e}", pool.label)),
                        }
                        pool.last_ack
                            .fetch_max(since_start().as_nanos() as u64, SeqCst);
                    }
                    Outcome::Failed(why) => {
                        let count = d.delivery_count();
                        let max = pool.queue.options().max_deliveries;
                        world.poison_deliveries.lock().unwrap().push(count);
                        let next = match max {
                            Some(m) if count >= m => "-> dead-letter queue",
                            _ => "-> redelivery",
                        };
                        log!(
                            "{}: worker {worker} message #{} {:?} delivery {}/{} failed: {why}; nack {next}",
                            pool.label,
                            d.id(),
                            d.name().unwrap_or(""),
                            count,
                            max.map_or("-".into(), |m| m.to_string()),
                        );
                        if let Err(e) = d.nack() {
                            world
                                .problems
                                .add(format!("{}: nack failed: {e}", pool.label));
                        }
                    }
                }
                pool.in_flight.fetch_sub(1, SeqCst);
            }
            merge(&pool, local);
        })
        .expect("spawn worker")
}

fn merge(pool: &Pool, local: PoolReport) {
    let mut r = pool.report.lock().unwrap();
    for (k, v) in local.by_name {
        *r.by_name.entry(k).or_default() += v;
    }
    for (k, v) in local.by_priority {
        *r.by_priority.entry(k).or_default() += v;
    }
    r.acked += local.acked;
    r.missing_execution_id += local.missing_execution_id;
}

// ---- producers ------------------------------------------------------------------

/// A producer thread: `count` messages with names from `names`, an execution id
/// header and a few priorities (mostly the default 4, some 6, a few 8).
fn spawn_producer(
    world: Arc<World>,
    queue: Queue,
    tenant: &'static str,
    names: &'static [&'static str],
    producer: usize,
    count: usize,
    sent: Arc<AtomicU64>,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name(format!("{tenant}-producer-{producer}"))
        .spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((producer as u64 + 1) << 32) ^ count as u64);
            for i in 0..count {
                let name = names[rng.below(names.len() as u64) as usize];
                let priority = match rng.below(100) {
                    0..=4 => 8,
                    5..=19 => 6,
                    _ => 4,
                };
                let exec = format!("{tenant}-{producer}-{:06}", i / 8);
                let body = format!(
                    "{{\"method\":\"{name}\",\"execution\":\"{exec}\",\"seq\":{i},\"payload\":\"{:016x}\"}}",
                    rng.next()
                );
                let msg = Message::new(body)
                    .name(name)
                    .header("execution_id", exec.as_str())
                    .header("producer", format!("{tenant}-{producer}"))
                    .priority(priority);
                if let Err(e) = queue.send(msg) {
                    world.problems.add(format!(
                        "{tenant} producer {producer}: send #{i} to {} failed: {e}",
                        queue.name()
                    ));
                    return;
                }
                sent.fetch_add(1, SeqCst);
            }
        })
        .expect("spawn producer")
}

// ---- the deterministic demonstrations ---------------------------------------------

/// A priority-9 message sent last is received first; the rest keep their order.
fn priority_demo(q: &Queue, problems: &Problems) -> bool {
    println!(
        "\n== Priority: a priority-9 message overtakes five sent before it ({}/{})",
        q.namespace(),
        q.name()
    );
    let mut sent = Vec::new();
    for step in 1..=5 {
        let id = q
            .send(
                Message::new(format!("step {step} of overcloud deploy"))
                    .name("ansible_task_completed")
                    .header("execution_id", "tripleo-deploy-0001")
                    .priority(2),
            )
            .expect("send");
        sent.push(id);
    }
    let urgent = q
        .send(
            Message::new("overcloud stack CREATE_FAILED")
                .name("stack_failed")
                .header("execution_id", "tripleo-deploy-0001")
                .priority(9),
        )
        .expect("send");
    println!(
        "  sent #{}..#{} at priority 2, then #{urgent} at priority 9",
        sent[0],
        sent[sent.len() - 1]
    );
    let mut order = Vec::new();
    while let Some(d) = q.try_receive().expect("receive") {
        println!(
            "  received #{} priority {} {:<24} -> ack",
            d.id(),
            d.priority(),
            d.name().unwrap_or("")
        );
        order.push(d.id());
        d.ack().expect("ack");
    }
    let mut expected = vec![urgent];
    expected.extend(&sent);
    let ok = order == expected;
    if ok {
        println!("  OK: #{urgent} (priority 9) came first, the priority-2 ones in send order");
    } else {
        problems.add(format!(
            "priority order: expected {expected:?}, got {order:?}"
        ));
    }
    ok
}

/// A tiny tenant exceeds its `max_messages` quota; nobody else is affected.
fn quota_demo(
    broker: &Broker,
    problems: &Problems,
    others_sent: &[Arc<AtomicU64>],
) -> (Option<Namespace>, bool) {
    let total = || others_sent.iter().map(|c| c.load(SeqCst)).sum::<u64>();
    // Let the load get going first, so "the others keep working" is visible.
    let wait_until = Instant::now() + Duration::from_millis(500);
    while total() < 1_000 && Instant::now() < wait_until {
        thread::sleep(Duration::from_millis(1));
    }
    let sandbox = broker
        .create_namespace("sandbox", Quotas::default().max_queues(1).max_messages(5))
        .expect("namespace");
    let q = sandbox
        .create_queue("scratch", QueueOptions::default())
        .expect("queue");
    let mut ids = Vec::new();
    let mut quota_at = None;
    for i in 1..=6 {
        match q.send(Message::new(format!("scratch {i}")).name("scratch_note")) {
            Ok(id) => ids.push(id),
            Err(e @ Error::QuotaExceeded { .. }) => {
                log!(
                    "sandbox/scratch (quota max_messages 5): sends 1-{} ok {ids:?}, send {i} -> Error::QuotaExceeded: {e}",
                    ids.len()
                );
                quota_at = Some(i);
            }
            Err(e) => problems.add(format!("sandbox send {i}: unexpected error {e}")),
        }
    }
    let mut ok = quota_at == Some(6);
    if quota_at != Some(6) {
        problems.add(format!(
            "sandbox quota: expected the 6th send to fail, failed at {quota_at:?}"
        ));
    }
    if q.stats().sent != 5 {
        problems.add("sandbox should hold exactly 5 messages");
    }
    match sandbox.create_queue("scratch2", QueueOptions::default()) {
        Err(e @ Error::QuotaExceeded { .. }) => log!("sandbox: creating a second queue -> {e}"),
        other => {
            ok = false;
            problems.add(format!("max_queues 1 not enforced: {other:?}"))
        }
    }
    let before = total();
    thread::sleep(Duration::from_millis(20));
    let after = total();
    log!(
        "meanwhile octavia + tripleo producers kept sending: {} -> {} messages",
        fmt_count(before),
        fmt_count(after)
    );
    if after == before && after < (OCTAVIA_PRODUCERS * OCTAVIA_PER_PRODUCER) as u64 {
        ok = false;
        problems.add("the other namespaces stalled while sandbox was over quota");
    }
    // Drain the sandbox: one ack frees room for a new message.
    let drain = || -> Result<(), Error> {
        if let Some(d) = q.try_receive()? {
            d.ack()?;
        }
        let id = q.send(Message::new("scratch 7").name("scratch_note"))?;
        log!("sandbox/scratch: after acking one message, a new send fits again (#{id})");
        while let Some(d) = q.try_receive()? {
            d.ack()?;
        }
        Ok(())
    };
    if let Err(e) = drain() {
        problems.add(format!("sandbox: draining failed: {e}"));
        return (None, false);
    }
    (Some(sandbox), ok)
}

// ---- summary --------------------------------------------------------------------

fn stats_header(first: &str) {
    println!(
        "  {:<25} {:>8} {:>8} {:>6} {:>11} {:>13} {:>5} {:>6}",
        first, "sent", "acked", "nacked", "redelivered", "dead_lettered", "ready", "leased"
    );
}

fn stats_row(label: &str, s: &QueueStats) {
    println!(
        "  {:<25} {:>8} {:>8} {:>6} {:>11} {:>13} {:>5} {:>6}",
        label,
        fmt_count(s.sent),
        fmt_count(s.acked),
        s.nacked,
        s.redelivered,
        s.dead_lettered,
        s.ready,
        s.leased,
    );
}

/// Every message that went in was acked or dead-lettered, and nothing is left.
fn check_settled(label: &str, s: &QueueStats, problems: &Problems) {
    let out = s.acked + s.dead_lettered + s.expired + s.cancelled + s.purged;
    if s.sent != out {
        problems.add(format!(
            "{label}: sent {} != acked {} + dead-lettered {} + expired {} + cancelled {} + purged {}",
            s.sent, s.acked, s.dead_lettered, s.expired, s.cancelled, s.purged
        ));
    }
    if s.ready != 0 || s.leased != 0 || s.delayed != 0 || s.bytes != 0 {
        problems.add(format!(
            "{label}: not drained: ready {}, leased {}, delayed {}, bytes {}",
            s.ready, s.leased, s.delayed, s.bytes
        ));
    }
    if s.received != s.sent - s.expired - s.cancelled - s.purged + s.redelivered {
        problems.add(format!(
            "{label}: received {} != sent {} + redelivered {}",
            s.received, s.sent, s.redelivered
        ));
    }
}

fn main() {
    let t0 = *START.get_or_init(Instant::now);
    println!(
        "libqueue demo: one in-memory broker, two tenants, {} producer and {} consumer threads",
        OCTAVIA_PRODUCERS + TRIPLEO_PRODUCERS + 1,
        PROVISIONING_WORKERS + WORKFLOW_WORKERS + HEALTH_WORKERS
    );

    // ---- topology ----
    let broker = Broker::new();
    let octavia = broker
        .create_namespace(
            "octavia",
            Quotas::default().max_queues(8).max_messages(100_000),
        )
        .expect("namespace octavia");
    let tripleo = broker
        .create_namespace("tripleo", Quotas::default())
        .expect("namespace tripleo");
    let provisioning = octavia
        .create_queue(
            "provisioning",
            QueueOptions::default()
                .lease_time(Duration::from_secs(5))
                .max_deliveries(3)
                .dead_letter_queue("provisioning.dlq")
                .max_messages(10_000)
                .on_full(OnFull::Timeout(Duration::from_secs(3))),
        )
        .expect("queue provisioning");
    let health = octavia
        .create_queue(
            "amphora-health",
            QueueOptions::default()
                .lease_time(SHORT_LEASE)
                .max_deliveries(5),
        )
        .expect("queue amphora-health");
    let dlq = octavia
        .get_queue("provisioning.dlq")
        .expect("dlq created with its queue");
    let events = tripleo
        .create_queue(
            "workflow-events",
            QueueOptions::default().lease_time(Duration::from_secs(5)),
        )
        .expect("queue workflow-events");

    println!("\n== Topology");
    println!("  namespace octavia   quotas: max_queues 8, max_messages 100,000");
    println!("    queue provisioning      lease 5 s, max_deliveries 3, dead letters -> provisioning.dlq,");
    println!(
        "                            capacity 10,000 (producers wait when full: backpressure)"
    );
    println!("    queue provisioning.dlq  (created with provisioning)");
    println!(
        "    queue amphora-health    lease {} ms, max_deliveries 5",
        SHORT_LEASE.as_millis()
    );
    println!("  namespace tripleo   quotas: none");
    println!("    queue workflow-events   lease 5 s");

    let world = Arc::new(World {
        producers_done: AtomicBool::new(false),
        problems: Problems::default(),
        poison_deliveries: Mutex::new(Vec::new()),
        clock: broker.clock().clone(),
        crash: Mutex::new(None),
        recovery: Mutex::new(None),
    });

    // ---- priority (before the consumers start, so the order is visible) ----
    let priority_ok = priority_demo(&events, &world.problems);

    // ---- consumers ----
    let pools: Vec<Arc<Pool>> = [
        ("octavia/provisioning", &provisioning, PROVISIONING_WORKERS),
        ("tripleo/workflow-events", &events, WORKFLOW_WORKERS),
        ("octavia/amphora-health", &health, HEALTH_WORKERS),
    ]
    .into_iter()
    .map(|(label, q, size)| {
        Arc::new(Pool {
            label: label.to_string(),
            queue: q.clone(),
            size,
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            last_ack: AtomicU64::new(0),
            report: Mutex::new(PoolReport::default()),
        })
    })
    .collect();

    println!(
        "\n== Load (events as they happen, ms since start): {} messages from {} producers; consumer pools of {}, {} and {} workers",
        fmt_count(
            (OCTAVIA_PRODUCERS * OCTAVIA_PER_PRODUCER
                + TRIPLEO_PRODUCERS * TRIPLEO_PER_PRODUCER
                + HEARTBEATS) as u64
        ),
        OCTAVIA_PRODUCERS + TRIPLEO_PRODUCERS + 1,
        PROVISIONING_WORKERS,
        WORKFLOW_WORKERS,
        HEALTH_WORKERS
    );
    let load_start = since_start();
    let mut workers = Vec::new();
    for pool in &pools {
        for w in 1..=pool.size {
            workers.push(spawn_worker(world.clone(), pool.clone(), w));
        }
    }

    // ---- the two special messages ----
    let poison_id = provisioning
        .send(
            Message::new("{\"method\":\"create_load_balancer\",\"flavor\":\"broken\"}")
                .name("create_load_balancer")
                .header("execution_id", "octavia-lb-poison")
                .header("flavor", "broken")
                .priority(6),
        )
        .expect("send poison");
    log!("octavia/provisioning: sent poison message #{poison_id} (its handler always fails)");
    let failover_id = health
        .send(
            Message::new("{\"method\":\"failover_amphora\",\"amphora\":\"amp-7\"}")
                .name("failover_amphora")
                .header("execution_id", "octavia-failover-amp-7")
                .priority(8),
        )
        .expect("send failover");
    log!("octavia/amphora-health: sent failover request #{failover_id}");

    // ---- producers ----
    let octavia_sent = Arc::new(AtomicU64::new(0));
    let tripleo_sent = Arc::new(AtomicU64::new(0));
    let health_sent = Arc::new(AtomicU64::new(0));
    let mut producers = Vec::new();
    for p in 1..=OCTAVIA_PRODUCERS {
        producers.push(spawn_producer(
            world.clone(),
            provisioning.clone(),
            "octavia",
            &OCTAVIA_NAMES,
            p,
            OCTAVIA_PER_PRODUCER,
            octavia_sent.clone(),
        ));
    }
    for p in 1..=TRIPLEO_PRODUCERS {
        producers.push(spawn_producer(
            world.clone(),
            events.clone(),
            "tripleo",
            &TRIPLEO_NAMES,
            p,
            TRIPLEO_PER_PRODUCER,
            tripleo_sent.clone(),
        ));
    }
    producers.push(spawn_producer(
        world.clone(),
        health.clone(),
        "octavia",
        &["amphora_heartbeat"],
        OCTAVIA_PRODUCERS + 1,
        HEARTBEATS,
        health_sent.clone(),
    ));

    // ---- quota (while the load runs) ----
    let (sandbox, quota_ok) = quota_demo(
        &broker,
        &world.problems,
        &[
            octavia_sent.clone(),
            tripleo_sent.clone(),
            health_sent.clone(),
        ],
    );
    let quota_ok = quota_ok && sandbox.is_some();
    if sandbox.is_none() {
        world.problems.add("sandbox demo could not drain its queue");
    }

    for p in producers {
        p.join().expect("producer panicked");
    }
    let producers_end = since_start();
    world.producers_done.store(true, SeqCst);
    log!(
        "producers done: {} messages sent in {:.0} ms",
        fmt_count(octavia_sent.load(SeqCst) + tripleo_sent.load(SeqCst) + health_sent.load(SeqCst)),
        (producers_end - load_start).as_secs_f64() * 1e3
    );
    for w in workers {
        w.join().expect("worker panicked");
    }
    let load_end = since_start();
    log!("consumer pools drained and stopped");

    // ---- the dead letter ----
    println!("\n== Dead-letter queue octavia/provisioning.dlq");
    let mut dead_letter_ok = false;
    match dlq.try_receive() {
        Ok(Some(d)) => {
            println!(
                "  message #{} {:?}, priority {}",
                d.id(),
                d.name().unwrap_or(""),
                d.priority()
            );
            for (k, v) in d.headers() {
                println!("    {k:<22} = {}", String::from_utf8_lossy(v));
            }
            let reason = d.header_str("x-dead-letter-reason").unwrap_or("");
            dead_letter_ok = d.header_str("x-original-id") == Some(&poison_id.to_string())
                && reason.contains("delivered 3 times")
                && d.header_str("execution_id") == Some("octavia-lb-poison");
            if !dead_letter_ok {
                world.problems.add(format!(
                    "dead letter does not describe poison #{poison_id}: {reason:?}"
                ));
            }
            d.ack().expect("ack dead letter");
            println!("  (read and acked by an operator)");
        }
        Ok(None) => world.problems.add("no dead letter in provisioning.dlq"),
        Err(e) => world.problems.add(format!("dlq receive failed: {e}")),
    }
    if let Ok(Some(d)) = dlq.try_receive() {
        world.problems.add(format!(
            "unexpected second dead letter #{} {:?}",
            d.id(),
            d.name()
        ));
        let _ = d.ack();
    }

    // ---- summary ----
    println!("\n================================ SUMMARY ================================");
    let problems = &world.problems;

    println!("\nDelivery semantics");
    let poison = world.poison_deliveries.lock().unwrap().clone();
    let poison_ok = poison == [1, 2, 3] && dead_letter_ok;
    println!(
        "  [{}] poison message #{poison_id}: deliveries {:?} all nacked, then dead-lettered with its reason",
        if poison_ok { "ok" } else { "FAIL" },
        poison
    );
    if poison != [1, 2, 3] {
        problems.add(format!(
            "poison message deliveries: expected [1, 2, 3], got {poison:?}"
        ));
    }
    let crash = *world.crash.lock().unwrap();
    let recovery = *world.recovery.lock().unwrap();
    match (crash, recovery) {
        (Some((cw, cid, deadline)), Some((rw, rid, rc, at))) => {
            let leased_at = deadline.saturating_sub(SHORT_LEASE.as_nanos() as u64);
            let after = Duration::from_nanos(at.saturating_sub(leased_at));
            let ok = cw != rw && cid == rid && rc == 2 && at >= deadline;
            println!(
                "  [{}] lease expiry: worker {cw} crashed holding #{cid}; {:.0} ms after it was leased \
                 (lease {} ms) worker {rw} got it with delivery_count {rc}",
                if ok { "ok" } else { "FAIL" },
                after.as_secs_f64() * 1e3,
                SHORT_LEASE.as_millis()
            );
            if !ok {
                problems.add("lease expiry did not redeliver as expected");
            }
        }
        _ => problems.add(format!(
            "lease demo incomplete: crash {crash:?}, recovery {recovery:?}"
        )),
    }
    println!(
        "  [{}] priority: the priority-9 message overtook five priority-2 messages",
        if priority_ok { "ok" } else { "FAIL" }
    );
    println!(
        "  [{}] quota: sandbox's 6th message -> Error::QuotaExceeded; octavia and tripleo unaffected",
        if quota_ok { "ok" } else { "FAIL" }
    );

    println!("\nConsumer pools (throttling = pool size: handlers running at once never exceed it)");
    for pool in &pools {
        let r = pool.report.lock().unwrap();
        let peak = pool.peak_in_flight.load(SeqCst);
        println!(
            "  {:<24} {} workers, peak in flight {}/{}, {} acked",
            pool.label,
            pool.size,
            peak,
            pool.size,
            fmt_count(r.acked)
        );
        if peak > pool.size {
            problems.add(format!(
                "{}: {peak} handlers at once > pool size {}",
                pool.label, pool.size
            ));
        }
        if r.missing_execution_id > 0 {
            problems.add(format!(
                "{}: {} messages without execution_id",
                pool.label, r.missing_execution_id
            ));
        }
        let names: Vec<String> = r
            .by_name
            .iter()
            .map(|(k, v)| format!("{k} {}", fmt_count(*v)))
            .collect();
        for chunk in names.chunks(3) {
            println!("      {}", chunk.join(", "));
        }
        let prios: Vec<String> = r
            .by_priority
            .iter()
            .rev()
            .map(|(p, n)| format!("p{p}: {}", fmt_count(*n)))
            .collect();
        println!("      by priority: {}", prios.join(", "));
    }

    println!("\nQueue statistics (queue.stats())");
    stats_header("queue");
    let queues: Vec<(String, Queue)> = vec![
        ("octavia/provisioning".into(), provisioning.clone()),
        ("octavia/provisioning.dlq".into(), dlq.clone()),
        ("octavia/amphora-health".into(), health.clone()),
        ("tripleo/workflow-events".into(), events.clone()),
    ]
    .into_iter()
    .chain(sandbox.iter().flat_map(|ns| {
        ns.list_queues()
            .into_iter()
            .map(move |q| (format!("sandbox/{q}"), ns.get_queue(&q).expect("listed")))
    }))
    .collect();
    let mut all = QueueStats::default();
    for (label, q) in &queues {
        let s = q.stats();
        stats_row(label, &s);
        check_settled(label, &s, problems);
        all.sent += s.sent;
        all.acked += s.acked;
        all.nacked += s.nacked;
        all.redelivered += s.redelivered;
        all.dead_lettered += s.dead_lettered;
        all.ready += s.ready;
        all.leased += s.leased;
        all.delayed += s.delayed;
    }
    stats_row("all queues", &all);

    // Expected per-queue numbers, from what the producers and the demo sent.
    let p = provisioning.stats();
    let expect = |what: &str, got: u64, want: u64| {
        if got != want {
            problems.add(format!("{what}: got {got}, expected {want}"));
        }
    };
    expect("provisioning sent", p.sent, octavia_sent.load(SeqCst) + 1);
    expect("provisioning nacked", p.nacked, 3);
    expect("provisioning dead-lettered", p.dead_lettered, 1);
    expect("provisioning.dlq sent", dlq.stats().sent, 1);
    expect(
        "amphora-health sent",
        health.stats().sent,
        health_sent.load(SeqCst) + 1,
    );
    expect(
        "workflow-events sent",
        events.stats().sent,
        tripleo_sent.load(SeqCst) + 6,
    );
    if health.stats().redelivered < 1 {
        problems.add("amphora-health shows no redelivery");
    }

    println!("\nNamespace statistics (namespace.stats())");
    stats_header("namespace");
    for ns in [Some(&octavia), Some(&tripleo), sandbox.as_ref()]
        .into_iter()
        .flatten()
    {
        let s = ns.stats();
        let q = &s.quotas;
        let quota = |v: Option<u64>| v.map_or("none".to_string(), fmt_count);
        let plural = if s.queues == 1 { "" } else { "s" };
        stats_row(
            &format!("{} ({} queue{plural})", ns.name(), s.queues),
            &s.totals,
        );
        println!(
            "      quotas: max_queues {}, max_messages {}",
            quota(q.max_queues),
            quota(q.max_messages)
        );
        check_settled(&format!("namespace {}", ns.name()), &s.totals, problems);
    }

    let bulk = pools
        .iter()
        .map(|p| p.report.lock().unwrap().acked)
        .sum::<u64>();
    let last_ack = pools
        .iter()
        .map(|p| Duration::from_nanos(p.last_ack.load(SeqCst)))
        .max()
        .unwrap_or_default();
    let busy = last_ack.saturating_sub(load_start);
    let total = t0.elapsed();
    println!("\nTiming");
    println!(
        "  load phase: {} messages sent, received and acked in {:.0} ms (producers finished after {:.0} ms)",
        fmt_count(bulk),
        busy.as_secs_f64() * 1e3,
        (producers_end - load_start).as_secs_f64() * 1e3
    );
    println!(
        "  rate:       {} msgs/s end to end (send + receive + ack), {} producer + {} consumer threads on {} CPUs",
        fmt_count((bulk as f64 / busy.as_secs_f64().max(1e-9)) as u64),
        OCTAVIA_PRODUCERS + TRIPLEO_PRODUCERS + 1,
        workers_count(&pools),
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "  total:      {:.0} ms for the whole demo (pools stopped {:.0} ms after the start of the load)",
        total.as_secs_f64() * 1e3,
        (load_end - load_start).as_secs_f64() * 1e3
    );

    let problems = problems.list();
    println!();
    if problems.is_empty() {
        println!(
            "VERIFIED: every sent message was acked or dead-lettered; nothing ready, leased or delayed is left."
        );
        broker.close();
    } else {
        println!("FAILED: {} problem(s):", problems.len());
        for p in &problems {
            println!("  - {p}");
        }
        std::process::exit(1);
    }
}

fn workers_count(pools: &[Arc<Pool>]) -> usize {
    pools.iter().map(|p| p.size).sum()
}
