//! The Octavia queue consumer (the `octavia-queue-consumer` seed), on libqueue.
//!
//! ```sh
//! cargo run --release --example octavia_consumer            # pool of 4
//! cargo run --release --example octavia_consumer -- 8       # pool of 8
//! RPC_THREAD_POOL_SIZE=1 cargo run --release --example octavia_consumer
//! ```
//!
//! The controller listens on the `OCTAVIA_PROV` topic through its queue
//! `octavia-controller`, with a [`Pool`] whose 15 handlers are the seed's consumer
//! methods (`create_load_balancer` ... `delete_member`). The pool size is the
//! seed's `rpc_thread_pool_size` (first argument, else `RPC_THREAD_POOL_SIZE`,
//! else 4): at most that many controller workers run at once, and no message
//! leaves the queue while they are all busy.
//!
//! An "API" thread fires a burst of 2000 messages across the 15 methods. Before
//! publishing it sets the object's provisioning status in the in-memory database
//! to `PENDING_*`, as the Octavia API does; the handlers move it to `ACTIVE` or
//! `DELETED`. Two members are marked bad: their handler fails, sets the member
//! to `ERROR`, and after `max_deliveries` (3) tries the message lands in the
//! dead-letter queue with the error text.
//!
//! At the end it prints per-method counts, the final statuses, the pool's and the
//! queues' statistics and the rate, and exits with status 1 if a check fails.

use libqueue::{
    Broker, Delivery, Filter, HandlerResult, Message, MessageView, Pool, QueueOptions, QueueStats,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The topic the controller listens on (the seed's "octavia provisioning").
const TOPIC: &str = "OCTAVIA_PROV";
/// The controller's subscription queue and its dead-letter queue.
const QUEUE: &str = "octavia-controller";
const DLQ: &str = "octavia-controller.dlq";
/// Messages in the burst.
const MESSAGES: usize = 2000;
/// Deliveries of a failing message before it is dead-lettered.
const MAX_DELIVERIES: u32 = 3;
/// Pool size when neither the argument nor the environment gives one.
const DEFAULT_POOL_SIZE: usize = 4;
/// Nothing may take longer than this.
const DEADLINE: Duration = Duration::from_secs(8);

const OBJECTS: [&str; 5] = [
    "load_balancer",
    "listener",
    "pool",
    "health_monitor",
    "member",
];
const OPS: [Op; 3] = [Op::Create, Op::Update, Op::Delete];

/// Members whose provisioning fails (the amphora refuses them).
const BAD_MEMBERS: [&str; 2] = ["member-0777", "member-1498"];

// ---- small helpers --------------------------------------------------------------

static START: OnceLock<Instant> = OnceLock::new();

fn ms() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

macro_rules! log {
    ($($arg:tt)*) => {
        println!("[{:>7.1} ms] {}", ms(), format!($($arg)*))
    };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
    fn pending(self) -> Status {
        match self {
            Op::Create => Status::PendingCreate,
            Op::Update => Status::PendingUpdate,
            Op::Delete => Status::PendingDelete,
        }
    }
    fn done(self) -> Status {
        match self {
            Op::Delete => Status::Deleted,
            _ => Status::Active,
        }
    }
    /// Simulated controller work (building an amphora is the slow part).
    fn work(self) -> Duration {
        match self {
            Op::Create => Duration::from_micros(900),
            Op::Update => Duration::from_micros(600),
            Op::Delete => Duration::from_micros(400),
        }
    }
}

/// One consumer method: an operation on a kind of object.
#[derive(Clone, Copy)]
struct Method {
    op: Op,
    object: &'static str,
}

impl Method {
    fn name(self) -> String {
        format!("{}_{}", self.op.verb(), self.object)
    }
    fn id_prefix(self) -> &'static str {
        match self.object {
            "load_balancer" => "lb",
            "health_monitor" => "hm",
            o => o,
        }
    }
    /// The `*_updates` payload of an update message.
    fn updates(self, i: usize) -> String {
        match self.object {
            "load_balancer" => format!(r#"{{"name": "lb-web-{i}", "description": "resized"}}"#),
            "listener" => format!(r#"{{"connection_limit": {}}}"#, 1000 + i),
            "pool" => r#"{"lb_algorithm": "LEAST_CONNECTIONS"}"#.to_string(),
            "health_monitor" => r#"{"delay": 5, "timeout": 3, "max_retries": 4}"#.to_string(),
            _ => format!(r#"{{"weight": {}, "admin_state_up": true}}"#, i % 10),
        }
    }
}

/// The 15 methods, in the seed's order (create/update/delete per object).
fn methods() -> Vec<Method> {
    OBJECTS
        .iter()
        .flat_map(|&object| OPS.iter().map(move |&op| Method { op, object }))
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Status {
    PendingCreate,
    PendingUpdate,
    PendingDelete,
    Active,
    Deleted,
    Error,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::PendingCreate => "PENDING_CREATE",
            Status::PendingUpdate => "PENDING_UPDATE",
            Status::PendingDelete => "PENDING_DELETE",
            Status::Active => "ACTIVE",
            Status::Deleted => "DELETED",
            Status::Error => "ERROR",
        }
    }
}

/// A row of the in-memory "database".
struct Row {
    status: Status,
    /// The `*_updates` payload the controller persisted, if any.
    applied: Option<String>,
}

/// The value of `"key": ...` in a flat JSON-ish text: a string's contents, or a
/// `{...}` object (without nested objects) as written.
fn field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": ");
    let start = body.find(&pat)? + pat.len();
    let rest = &body[start..];
    if let Some(s) = rest.strip_prefix('"') {
        s.find('"').map(|end| &s[..end])
    } else if rest.starts_with('{') {
        rest.find('}').map(|end| &rest[..=end])
    } else {
        None
    }
}

/// A running handler: counts itself in and out of the "running now" gauge.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn enter(now: &'a AtomicUsize, max: &AtomicUsize) -> Self {
        let n = now.fetch_add(1, SeqCst) + 1;
        max.fetch_max(n, SeqCst);
        Running(now)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

// ---- the controller ---------------------------------------------------------------

struct Controller {
    methods: Vec<Method>,
    db: Mutex<HashMap<String, Row>>,
    /// Handlers running now, and the most that ever ran at once.
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Per method: successful runs and failed runs.
    ok: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    /// Messages finished for good (succeeded, or failed on their last delivery).
    finished: Mutex<usize>,
    finished_cv: Condvar,
}

impl Controller {
    fn finish_one(&self) {
        *self.finished.lock().unwrap() += 1;
        self.finished_cv.notify_all();
    }

    /// The body of every consumer method: `(context, [*_updates,] *_id)`.
    fn handle(&self, m: usize, d: &Delivery) -> HandlerResult {
        let _running = Running::enter(&self.running, &self.max_running);
        let method = self.methods[m];
        let name = method.name();
        let body = std::str::from_utf8(d.body()).map_err(|_| "body is not UTF-8".to_string())?;
        let id_key = format!("{}_id", method.object);
        let id = field(body, &id_key).ok_or_else(|| format!("{name}: no {id_key} in {body}"))?;
        let request = field(body, "request_id").ok_or_else(|| format!("{name}: no context"))?;
        let updates = match method.op {
            Op::Update => Some(
                field(body, &format!("{}_updates", method.object))
                    .ok_or_else(|| format!("{name}: no {}_updates", method.object))?,
            ),
            _ => None,
        };
        {
            // The controller worker reads the object's state first. A retry
            // finds it in ERROR (set by the failed try before).
            let db = self.db.lock().unwrap();
            let row = db
                .get(id)
                .ok_or_else(|| format!("{name}: {id} not in the database"))?;
            if row.status != method.op.pending() && row.status != Status::Error {
                return Err(format!(
                    "{name}: {id} is {}, expected {}",
                    row.status.as_str(),
                    method.op.pending().as_str()
                ));
            }
        }
        thread::sleep(method.op.work()); // provisioning
        let last_try = d.delivery_count() >= MAX_DELIVERIES;
        if BAD_MEMBERS.contains(&id) {
            // Rollback: only the provisioning status changes.
            self.db
                .lock()
                .unwrap()
                .get_mut(id)
                .expect("read above")
                .status = Status::Error;
            self.failed[m].fetch_add(1, SeqCst);
            let err = format!(
                "{name} {id} ({request}): amphora amp-{} refused the member: connection refused",
                &id[id.len() - 2..]
            );
            log!(
                "  {name} {id}: try {}/{MAX_DELIVERIES} failed -> {id} is ERROR{}",
                d.delivery_count(),
                if last_try {
                    ", giving up"
                } else {
                    ", will retry"
                }
            );
            if last_try {
                self.finish_one();
            }
            return Err(err);
        }
        {
            let mut db = self.db.lock().unwrap();
            let row = db.get_mut(id).expect("read above");
            row.status = method.op.done();
            if let Some(u) = updates {
                row.applied = Some(u.to_string());
            }
        }
        self.ok[m].fetch_add(1, SeqCst);
        self.finish_one();
        Ok(None)
    }
}

/// The pool size: the first argument, else `RPC_THREAD_POOL_SIZE`, else 4.
fn pool_size() -> Result<(usize, String), String> {
    let (text, from) = match std::env::args().nth(1) {
        Some(a) => (a, "the command line".to_string()),
        None => match std::env::var("RPC_THREAD_POOL_SIZE") {
            Ok(v) => (v, "RPC_THREAD_POOL_SIZE".to_string()),
            Err(_) => return Ok((DEFAULT_POOL_SIZE, "the default".to_string())),
        },
    };
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok((n, from)),
        _ => Err(format!(
            "pool size from {from} must be a number 1..=256, got {text:?}"
        )),
    }
}

fn print_queue(label: &str, s: &QueueStats) {
    println!(
        "  {label:<24} sent {:>5}  received {:>5}  acked {:>5}  nacked {:>2}  redelivered {:>2}  \
         dead-lettered {:>2}  now ready {} / leased {} / delayed {}",
        s.sent,
        s.received,
        s.acked,
        s.nacked,
        s.redelivered,
        s.dead_lettered,
        s.ready,
        s.leased,
        s.delayed
    );
}

fn main() {
    let (size, from) = match pool_size() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("octavia_consumer: {e}");
            std::process::exit(2);
        }
    };
    ms();
    match run(size, &from) {
        Ok(problems) if problems.is_empty() => println!("\nall checks passed"),
        Ok(problems) => {
            println!("\n{} check(s) FAILED:", problems.len());
            for p in &problems {
                println!("  - {p}");
            }
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("octavia_consumer: {e}");
            std::process::exit(1);
        }
    }
}

fn run(size: usize, from: &str) -> libqueue::Result<Vec<String>> {
    let mut problems: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };

    let broker = Broker::new();
    let ns = broker.namespace("octavia")?;
    let controller_q = ns.create_queue(
        QUEUE,
        QueueOptions::default()
            .lease_time(Duration::from_secs(30))
            .max_deliveries(MAX_DELIVERIES)
            .dead_letter_queue(DLQ),
    )?;
    let topic = ns.topic(TOPIC)?;
    topic.subscribe(QUEUE, Filter::All)?;
    let dlq = ns.get_queue(DLQ)?;
    log!(
        "controller: topic {TOPIC} -> queue {QUEUE} (max_deliveries {MAX_DELIVERIES}, \
         dead letters to {DLQ})"
    );
    log!("controller: rpc_thread_pool_size = {size} (from {from})");

    let controller = Arc::new(Controller {
        methods: methods(),
        db: Mutex::new(HashMap::new()),
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
        ok: (0..15).map(|_| AtomicU64::new(0)).collect(),
        failed: (0..15).map(|_| AtomicU64::new(0)).collect(),
        finished: Mutex::new(0),
        finished_cv: Condvar::new(),
    });
    let mut builder = Pool::builder(&ns, QUEUE)?
        .size(size)
        .backoff(Duration::from_millis(10), Duration::from_millis(100));
    for (m, method) in controller.methods.iter().enumerate() {
        let c = controller.clone();
        builder = builder.handler(&method.name(), move |d| c.handle(m, d));
    }
    let pool = builder.start()?;
    log!(
        "controller: pool started with {} handlers: {}",
        controller.methods.len(),
        controller
            .methods
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // ---- the API fires a burst ------------------------------------------------------
    let started = Instant::now();
    let api = {
        let c = controller.clone();
        let topic = topic.clone();
        thread::Builder::new()
            .name("octavia-api".into())
            .spawn(move || -> libqueue::Result<Vec<u64>> {
                let mut published = vec![0u64; c.methods.len()];
                for i in 0..MESSAGES {
                    let m = i % c.methods.len();
                    let method = c.methods[m];
                    let id = format!("{}-{i:04}", method.id_prefix());
                    let context = format!(
                        r#"{{"request_id": "req-{i:05}", "project_id": "project-{}", "roles": ["admin"]}}"#,
                        i % 7
                    );
                    let body = match method.op {
                        Op::Update => format!(
                            r#"{{"context": {context}, "{o}_updates": {}, "{o}_id": "{id}"}}"#,
                            method.updates(i),
                            o = method.object
                        ),
                        _ => format!(
                            r#"{{"context": {context}, "{}_id": "{id}"}}"#,
                            method.object
                        ),
                    };
                    // The API marks the object PENDING_* and hands the work over.
                    c.db.lock().unwrap().insert(
                        id.clone(),
                        Row {
                            status: method.op.pending(),
                            applied: None,
                        },
                    );
                    let got = topic.publish(Message::new(body).name(method.name()))?;
                    assert_eq!(got, 1, "one subscriber");
                    published[m] += 1;
                }
                Ok(published)
            })
            .expect("spawn the API thread")
    };

    // ---- progress: the backlog drains at most `size` at a time ---------------------
    let deadline = started + DEADLINE;
    let mut timed_out = false;
    {
        let mut finished = controller.finished.lock().unwrap();
        let mut next_report = Instant::now() + Duration::from_millis(100);
        while *finished < MESSAGES {
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                break;
            }
            if now >= next_report {
                let done = *finished;
                drop(finished);
                let s = controller_q.stats();
                log!(
                    "progress: {done:>4}/{MESSAGES} done | queue ready {:>4}, delayed {}, \
                     leased {} | handlers running {} (max so far {})",
                    s.ready,
                    s.delayed,
                    s.leased,
                    controller.running.load(SeqCst),
                    controller.max_running.load(SeqCst)
                );
                next_report = now + Duration::from_millis(100);
                finished = controller.finished.lock().unwrap();
                continue;
            }
            let wait = next_report.min(deadline) - now;
            finished = controller
                .finished_cv
                .wait_timeout(finished, wait)
                .unwrap()
                .0;
        }
    }
    let elapsed = started.elapsed();
    let published = match api.join() {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(e),
        Err(_) => vec![0; 15],
    };
    if !timed_out {
        log!("all {MESSAGES} messages finished; stopping the pool");
    }
    // The pool counts a handler's result after the handler returns (and
    // `stop` consumes the pool), so let the last counts land before reading them.
    let settle_by = Instant::now() + Duration::from_secs(1);
    let mut pool_stats = pool.stats();
    while (pool_stats.active > 0 || pool_stats.succeeded + pool_stats.failed < pool_stats.handled)
        && Instant::now() < settle_by
    {
        thread::sleep(Duration::from_millis(1));
        pool_stats = pool.stats();
    }
    if timed_out {
        let report = pool.stop_timeout(Duration::from_millis(500));
        check(
            false,
            format!(
                "timed out after {DEADLINE:?} with {} of {MESSAGES} finished ({} messages \
                 of running handlers returned to the queue)",
                *controller.finished.lock().unwrap(),
                report.returned
            ),
        );
    } else {
        pool.stop();
    }
    log!("pool stopped");

    // ---- the dead letters -------------------------------------------------------------
    println!("\ndead-letter queue {DLQ}:");
    let mut dead = Vec::new();
    while let Some(d) =
        dlq.receive_timeout(Duration::from_millis(if dead.len() < BAD_MEMBERS.len() {
            1000
        } else {
            0
        }))?
    {
        let body = String::from_utf8_lossy(d.body()).into_owned();
        let id = field(&body, "member_id").unwrap_or("?").to_string();
        println!("  {} {id}", d.name().unwrap_or("-"));
        println!("    body:   {body}");
        println!(
            "    reason: {}",
            d.header_str("x-dead-letter-reason").unwrap_or("(none)")
        );
        dead.push((d.name().unwrap_or("-").to_string(), id));
        d.ack()?;
    }

    // ---- report ---------------------------------------------------------------------
    let db = controller.db.lock().unwrap();
    println!(
        "\n  {:<22} {:>9} {:>10} {:>13}",
        "method", "published", "succeeded", "failed tries"
    );
    let mut total_ok = 0;
    for (m, method) in controller.methods.iter().enumerate() {
        let ok = controller.ok[m].load(SeqCst);
        let failed = controller.failed[m].load(SeqCst);
        total_ok += ok;
        println!(
            "  {:<22} {:>9} {:>10} {:>13}",
            method.name(),
            published[m],
            ok,
            failed
        );
        let expect_failed = (0..MESSAGES)
            .filter(|i| i % controller.methods.len() == m)
            .filter(|i| BAD_MEMBERS.contains(&format!("{}-{i:04}", method.id_prefix()).as_str()))
            .count() as u64;
        check(
            ok + expect_failed == published[m],
            format!(
                "{}: {ok} succeeded + {expect_failed} bad != {} published",
                method.name(),
                published[m]
            ),
        );
        check(
            failed == expect_failed * u64::from(MAX_DELIVERIES),
            format!(
                "{}: {failed} failed tries, expected {}",
                method.name(),
                expect_failed * u64::from(MAX_DELIVERIES)
            ),
        );
    }
    let bad = BAD_MEMBERS.len() as u64;

    let mut by_status: BTreeMap<Status, u64> = BTreeMap::new();
    for row in db.values() {
        *by_status.entry(row.status).or_default() += 1;
    }
    let applied = db.values().filter(|r| r.applied.is_some()).count();
    println!(
        "\nfinal provisioning statuses ({} objects): {}; updates persisted: {applied}",
        db.len(),
        by_status
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let count = |s| by_status.get(&s).copied().unwrap_or(0);
    let creates_updates = (0..MESSAGES).filter(|i| i % 3 != 2).count() as u64;
    let deletes = MESSAGES as u64 - creates_updates;
    check(
        count(Status::PendingCreate) + count(Status::PendingUpdate) + count(Status::PendingDelete)
            == 0,
        "objects left PENDING_*".into(),
    );
    check(
        count(Status::Active) == creates_updates - bad,
        format!(
            "{} ACTIVE, expected {}",
            count(Status::Active),
            creates_updates - bad
        ),
    );
    check(
        count(Status::Deleted) == deletes,
        format!("{} DELETED, expected {deletes}", count(Status::Deleted)),
    );
    for id in BAD_MEMBERS {
        let status = db.get(id).map(|r| r.status);
        println!("  {id}: {}", status.map_or("(missing)", |s| s.as_str()));
        check(
            status == Some(Status::Error),
            format!("{id} is {status:?}, expected ERROR"),
        );
    }
    drop(db);

    let mut dead_ids: Vec<&str> = dead.iter().map(|(_, id)| id.as_str()).collect();
    dead_ids.sort();
    check(
        dead_ids == BAD_MEMBERS,
        format!("dead letters {dead_ids:?}, expected {BAD_MEMBERS:?}"),
    );

    let max_running = controller.max_running.load(SeqCst);
    println!("\nthrottle (rpc_thread_pool_size = {size}):");
    println!("  most handlers running at once, counted in the handlers: {max_running}");
    println!(
        "  pool.stats(): handled {}, succeeded {}, failed {}, panicked {}, max_active {}",
        pool_stats.handled,
        pool_stats.succeeded,
        pool_stats.failed,
        pool_stats.panicked,
        pool_stats.max_active
    );
    check(
        max_running <= size,
        format!("{max_running} handlers ran at once, pool size {size}"),
    );
    check(
        pool_stats.max_active <= size,
        format!(
            "pool max_active {} > pool size {size}",
            pool_stats.max_active
        ),
    );
    if max_running == size {
        println!("  the burst kept all {size} worker(s) busy and never more: the throttle held");
    } else {
        println!("  (the burst never filled all {size} workers)");
    }
    let retries = bad * u64::from(MAX_DELIVERIES - 1);
    check(
        pool_stats.handled == MESSAGES as u64 + retries
            && pool_stats.succeeded == MESSAGES as u64 - bad
            && pool_stats.failed == bad * u64::from(MAX_DELIVERIES)
            && pool_stats.panicked == 0,
        format!(
            "pool stats {pool_stats:?}, expected handled {}, succeeded {}, failed {}",
            MESSAGES as u64 + retries,
            MESSAGES as u64 - bad,
            bad * u64::from(MAX_DELIVERIES)
        ),
    );

    let qs = controller_q.stats();
    let ds = dlq.stats();
    println!("\nqueues:");
    print_queue(QUEUE, &qs);
    print_queue(DLQ, &ds);
    check(
        qs.sent == MESSAGES as u64
            && qs.acked == MESSAGES as u64 - bad
            && qs.dead_lettered == bad
            && qs.redelivered == retries
            && qs.depth() == 0,
        format!("{QUEUE} stats {qs:?}"),
    );
    check(
        ds.sent == bad && ds.acked == bad && ds.depth() == 0,
        format!("{DLQ} stats {ds:?}"),
    );
    check(
        total_ok + bad == MESSAGES as u64,
        format!("{total_ok} handled + {bad} dead-lettered != {MESSAGES}"),
    );

    println!(
        "\n{MESSAGES} messages in {:.1} ms: {:.0} messages/s with {size} worker(s)",
        elapsed.as_secs_f64() * 1e3,
        MESSAGES as f64 / elapsed.as_secs_f64()
    );
    Ok(problems)
}
