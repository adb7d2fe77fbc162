//! The example server under load on loopback: requests per second and
//! latency with authentication disabled, with a valid key, and with a wrong
//! key.
//!
//! The server runs on one tokio worker thread and listens on `127.0.0.1:0`.
//! It serves either the example app as `cargo run --example server` does
//! (`app::app` from `examples/server/app.rs`), or the same routes behind the
//! layer alone (`app::router` plus the layer, without the app's middleware
//! that logs each accepted key's name), which isolates the layer's cost.
//!
//! The load generator runs on another thread: a fixed number of HTTP/1.1
//! keep-alive connections, each sending `GET /memories?user_id=bench` (three
//! stored memories) with an `X-API-Key` header and reading the whole
//! response before sending the next request. The disabled scenarios receive
//! the valid key too, so scenarios differ only in the server. Each scenario
//! runs for a fixed time, capped at a fixed number of requests. The
//! scenarios take turns over several rounds, so that other work on the
//! machine weighs on all of them alike. The figures are the medians over the
//! rounds, and each throughput ratio is the median of the rounds' own ratios.
//!
//! ```text
//! cargo bench --bench end_to_end
//! cargo bench --bench end_to_end -- --seconds 5 --rounds 20 --connections 16
//! ```
//!
//! Without `--bench` on the command line (as under `cargo test --benches`)
//! each scenario runs once for 200 ms, only to check that it runs.

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_api_key::ApiKeyLayer;

const KEY: &str = "5d41402abc4b2a76b9719d911017c592";
const WRONG_KEY: &str = "5d41402abc4b2a76b9719d911017c593";
const PATH: &str = "/memories?user_id=bench";

/// Upper bound on requests per scenario and round, whatever the duration.
const MAX_REQUESTS: usize = 2_000_000;
/// Time each scenario runs before measuring, per round.
const WARM_UP: Duration = Duration::from_millis(500);

fn main() {
    let options = Options::from_args();
    println!(
        "{} connection(s), {:?} per scenario and round, {} round(s), at most {MAX_REQUESTS} requests each",
        options.connections, options.duration, options.rounds
    );
    if !options.full {
        println!("test mode (no --bench argument): too short for the figures to mean anything");
    }

    let scenarios = [
        Scenario {
            name: "app, disabled",
            app: app::app,
            layer: ApiKeyLayer::disabled(),
            key: KEY,
            expected: StatusCode::OK,
        },
        Scenario {
            name: "app, valid key",
            app: app::app,
            layer: enabled_layer(),
            key: KEY,
            expected: StatusCode::OK,
        },
        Scenario {
            name: "app, wrong key",
            app: app::app,
            layer: enabled_layer(),
            key: WRONG_KEY,
            expected: StatusCode::UNAUTHORIZED,
        },
        Scenario {
            name: "router, disabled",
            app: router_with_layer,
            layer: ApiKeyLayer::disabled(),
            key: KEY,
            expected: StatusCode::OK,
        },
        Scenario {
            name: "router, valid key",
            app: router_with_layer,
            layer: enabled_layer(),
            key: KEY,
            expected: StatusCode::OK,
        },
    ];

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client runtime starts");
    let mut results: Vec<Vec<Round>> = scenarios.iter().map(|_| Vec::new()).collect();

    for round_index in 0..options.rounds {
        // Each round starts with the next scenario, so that none always
        // runs first or last.
        for offset in 0..scenarios.len() {
            let index = (round_index + offset) % scenarios.len();
            let scenario = &scenarios[index];
            let server = Server::start((scenario.app)(scenario.layer.clone()));
            client.block_on(seed(server.address));
            client.block_on(load(scenario, server.address, options.connections, WARM_UP));
            let round = client.block_on(load(
                scenario,
                server.address,
                options.connections,
                options.duration,
            ));
            server.stop();
            results[index].push(round);
        }
    }

    println!(
        "{:<18} {:>10} {:>12} {:>10} {:>10}  req/s per round",
        "scenario", "requests", "req/s", "p50", "p99"
    );
    for (scenario, rounds) in scenarios.iter().zip(&results) {
        let requests: usize = rounds.iter().map(|round| round.latencies.len()).sum();
        let per_second = median(rounds.iter().map(Round::per_second).collect());
        let p50 = median(rounds.iter().map(|round| round.percentile(0.50)).collect());
        let p99 = median(rounds.iter().map(|round| round.percentile(0.99)).collect());
        let per_round: Vec<String> = rounds
            .iter()
            .map(|round| format!("{:.0}", round.per_second()))
            .collect();
        println!(
            "{:<18} {:>10} {:>12.0} {:>8.1}µs {:>8.1}µs  {}",
            scenario.name,
            requests,
            per_second,
            p50,
            p99,
            per_round.join(" ")
        );
    }

    // Paired by round, because a round's scenarios run close together in
    // time and so share most of the machine's other load.
    print_ratio("app: valid key / disabled", &results[1], &results[0]);
    print_ratio("router: valid key / disabled", &results[4], &results[3]);
    println!("target: the app's ratio at least 97%");
}

fn print_ratio(label: &str, valid: &[Round], disabled: &[Round]) {
    let ratios: Vec<f64> = valid
        .iter()
        .zip(disabled)
        .map(|(valid, disabled)| valid.per_second() / disabled.per_second())
        .collect();
    let per_round: Vec<String> = ratios
        .iter()
        .map(|ratio| format!("{:.1}", 100.0 * ratio))
        .collect();
    println!(
        "{label}, median of the rounds: {:.1}%; per round: {}",
        100.0 * median(ratios),
        per_round.join(" ")
    );
}

struct Options {
    connections: usize,
    duration: Duration,
    rounds: usize,
    /// `cargo bench` passes `--bench`; `cargo test --benches` does not.
    full: bool,
}

impl Options {
    fn from_args() -> Self {
        let mut connections = 8;
        let mut seconds = None;
        let mut rounds = None;
        let mut full = false;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => full = true,
                "--connections" => connections = positive(&arg, args.next()),
                "--seconds" => seconds = Some(positive(&arg, args.next())),
                "--rounds" => rounds = Some(positive(&arg, args.next())),
                _ => {}
            }
        }

        let duration = match (seconds, full) {
            (Some(seconds), _) => Duration::from_secs(seconds as u64),
            (None, true) => Duration::from_secs(2),
            (None, false) => Duration::from_millis(200),
        };
        let rounds = rounds.unwrap_or(if full { 10 } else { 1 });
        Self {
            connections,
            duration,
            rounds,
            full,
        }
    }
}

fn positive(option: &str, value: Option<String>) -> usize {
    let value = value.unwrap_or_default();
    match value.parse() {
        Ok(parsed) if parsed > 0 => parsed,
        _ => panic!("{option} expects a positive integer, not {value:?}"),
    }
}

fn enabled_layer() -> ApiKeyLayer {
    app::configure_auth(ApiKeyLayer::builder().key(KEY))
        .build()
        .expect("the bench configuration is valid")
}

/// One server configuration and the key its clients send.
struct Scenario {
    name: &'static str,
    /// Builds the served app around the layer.
    app: fn(ApiKeyLayer) -> Router,
    layer: ApiKeyLayer,
    /// Sent in `X-API-Key`, also where authentication is disabled, so that
    /// the scenarios differ only in the server.
    key: &'static str,
    expected: StatusCode,
}

/// The example's routes behind the layer alone, without the middleware
/// that `app::app` adds to log each accepted key's name.
fn router_with_layer(layer: ApiKeyLayer) -> Router {
    app::router(app::Store::default()).layer(layer)
}

// ==== server ====

/// An app on an ephemeral loopback port, on a runtime of its own.
struct Server {
    address: SocketAddr,
    shutdown: oneshot::Sender<()>,
    runtime: Runtime,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn start(app: Router) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the server runtime starts");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("binding 127.0.0.1:0 succeeds");
        let address = listener.local_addr().expect("the listener has an address");

        let (shutdown, signal) = oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = signal.await;
                })
                .await
        });
        Self {
            address,
            shutdown,
            runtime,
            task,
        }
    }

    fn stop(self) {
        let _ = self.shutdown.send(());
        self.runtime
            .block_on(self.task)
            .expect("the server task does not panic")
            .expect("the server shuts down cleanly");
    }
}

// ==== load generator ====

/// Stores three memories for the user that the load lists, with the key (an
/// extra header is harmless where authentication is disabled).
async fn seed(address: SocketAddr) {
    let mut connection = Connection::open(address).await;
    let body = r#"{"user_id":"bench","messages":[
        {"role":"user","content":"I like tea"},
        {"role":"user","content":"I live in Lisbon"},
        {"role":"user","content":"I cycle to work"}]}"#;
    let request = Request::post(format!("http://{address}/memories"))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("the seed request is valid");
    let response = connection
        .sender
        .send_request(request)
        .await
        .expect("seeding succeeds");
    assert_eq!(response.status(), StatusCode::OK, "seeding the store");
    response
        .into_body()
        .collect()
        .await
        .expect("the seed response arrives");
    connection.close().await;
}

/// An open client connection: the request sender and the task that drives
/// the connection.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    task: JoinHandle<hyper::Result<()>>,
}

impl Connection {
    async fn open(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address)
            .await
            .expect("connecting succeeds");
        stream.set_nodelay(true).expect("TCP_NODELAY can be set");
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("the HTTP/1.1 handshake succeeds");
        Self {
            sender,
            task: tokio::spawn(connection),
        }
    }

    /// Closes the connection and waits until it is closed, so that the
    /// server's graceful shutdown does not wait for it.
    async fn close(self) {
        drop(self.sender);
        self.task
            .await
            .expect("the connection task does not panic")
            .expect("the connection closes cleanly");
    }
}

/// Latencies of one scenario in one round, in microseconds.
struct Round {
    latencies: Vec<f64>,
    elapsed: Duration,
}

impl Round {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Returns the latency at `fraction` (0.5 for the median) in µs.
    fn percentile(&self, fraction: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let index = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
        sorted[index]
    }
}

/// Runs `connections` request loops against the server until `duration`
/// has passed or [`MAX_REQUESTS`] requests have been sent, and checks that
/// every response has the expected status.
async fn load(
    scenario: &Scenario,
    address: SocketAddr,
    connections: usize,
    duration: Duration,
) -> Round {
    let start = Instant::now();
    let deadline = start + duration;
    let per_connection = MAX_REQUESTS.div_ceil(connections);

    let mut tasks = Vec::new();
    for _ in 0..connections {
        let key = scenario.key;
        let expected = scenario.expected;
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(address).await;
            let mut latencies = Vec::new();
            while Instant::now() < deadline && latencies.len() < per_connection {
                let request = Request::get(format!("http://{address}{PATH}"))
                    .header("x-api-key", key)
                    .body(Full::default())
                    .expect("the request is valid");

                let sent = Instant::now();
                let response = connection
                    .sender
                    .send_request(request)
                    .await
                    .expect("the server responds");
                let status = response.status();
                response
                    .into_body()
                    .collect()
                    .await
                    .expect("the body arrives");
                latencies.push(sent.elapsed().as_secs_f64() * 1e6);

                assert_eq!(status, expected, "unexpected status");
            }
            connection.close().await;
            latencies
        }));
    }

    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a load task does not panic"));
    }
    Round {
        latencies,
        elapsed: start.elapsed(),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
