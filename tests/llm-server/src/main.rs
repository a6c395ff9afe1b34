//! `cargo run --release -p camel-llm-server -- [PORT] [LATENCY_MS]`: the test server on
//! 127.0.0.1, answering camel's default instruction prompts like a well-behaved model
//! ([`camel_llm_server::clinical_responder`]), for trying an `openai` or `azure` provider by hand
//! (`base_url: http://127.0.0.1:PORT/v1`, or `endpoint: http://127.0.0.1:PORT`). Prints each
//! request's path and size, never its content.

use std::time::Duration;

const USAGE: &str = "usage: camel-llm-server [PORT (default 8000)] [LATENCY_MS (default 0)]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "{USAGE}\nA local OpenAI/Azure-compatible test server on 127.0.0.1 (camel's tests use it as a library)."
        );
        return;
    }
    let number = |i: usize, default: u64, max: u64| -> u64 {
        match args.get(i).map(|a| a.parse::<u64>()) {
            None => default,
            Some(Ok(n)) if n <= max => n,
            Some(_) => {
                eprintln!("camel-llm-server: `{}` is not a number (at most {max})\n{USAGE}", args[i]);
                std::process::exit(2);
            }
        }
    };
    let port = number(0, 8000, u64::from(u16::MAX)) as u16;
    let latency = number(1, 0, 3_600_000);
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
