//! `cargo run --release -p camel-llm-server -- [PORT] [LATENCY_MS]`: the test server on
//! 127.0.0.1, answering camel's default instruction prompts like a well-behaved model
//! ([`camel_llm_server::clinical_responder`]), for trying an `openai` or `azure` provider by hand
//! (`base_url: http://127.0.0.1:PORT/v1`, or `endpoint: http://127.0.0.1:PORT`). Prints each
//! request's path and size, never its content.

use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(8000, |a| a.parse().expect("PORT is a number"));
    let latency: u64 = args.next().map_or(0, |a| a.parse().expect("LATENCY_MS is a number"));
    let server = camel_llm_server::Server::start_on(port);
    server.set_latency(Duration::from_millis(latency));
    server.set_responder(camel_llm_server::clinical_responder);
    eprintln!("camel-llm-server: listening on {} ({latency} ms latency); Ctrl-C stops it", server.url());
    let mut seen = 0;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let reqs = server.requests();
        for r in &reqs[seen..] {
            eprintln!("{:>8.3}s {} {} ({} bytes)", r.at.as_secs_f64(), r.method, r.path, r.body.len());
        }
        seen = reqs.len();
    }
}
