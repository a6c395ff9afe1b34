//! The c10d binding between 2 processes over Gloo: every collective gives torch's result in
//! place on the tensors passed in (started ones too, once waited for), and a peer that is gone turns into an error, not a hang. The
//! test re-runs this test binary once per rank (filtered to `collectives_rank`).

use std::process::Command;
use std::time::{Duration, Instant};

use camel_torch_worker::dist::{Backend, ProcessGroup, ReduceOp, Rendezvous};
use tch::{Kind, Tensor};

const RANK_ENV: &str = "CAMEL_TEST_COLLECTIVES_RANK";

#[test]
fn collectives_between_two_processes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(&exe)
                .args(["--exact", "collectives_rank", "--nocapture", "--test-threads=1"])
                .env(RANK_ENV, rank.to_string())
                .env("CAMEL_TEST_COLLECTIVES_PORT", port.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (rank, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        print!("{out}");
        assert!(o.status.success(), "rank {rank} failed:\n{out}\n{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.contains(&format!("collectives ok on rank {rank}")), "{out}");
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.reshape([-1])).unwrap()
}

/// One rank's side of the test above; does nothing when run on its own.
#[test]
fn collectives_rank() {
    let Ok(rank) = std::env::var(RANK_ENV) else { return };
    let rank: usize = rank.parse().unwrap();
    let port: u16 = std::env::var("CAMEL_TEST_COLLECTIVES_PORT").unwrap().parse().unwrap();
    let rv = Rendezvous {
        addr: "127.0.0.1".into(),
        port,
        rank,
        world: 2,
        serve_store: rank == 0,
        timeout: Duration::from_secs(10),
        cuda_device: None,
    };
    let pg = ProcessGroup::new(&rv, Backend::Gloo).unwrap();
    let r = rank as f32;

    let t = Tensor::from_slice(&[r + 1.0; 4]);
    pg.all_reduce(&t, ReduceOp::Sum).unwrap();
    assert_eq!(values(&t), [3.0; 4], "all_reduce sum, in place");
    let t = Tensor::from_slice(&[r, -r]);
    pg.all_reduce(&t, ReduceOp::Max).unwrap();
    assert_eq!(values(&t), [1.0, 0.0]);

    // In place on a view: the collective writes into the caller's storage (no copies).
    let base = Tensor::zeros([2, 3], (Kind::Float, tch::Device::Cpu));
    let row = base.get(1);
    let _ = row.shallow_clone().fill_(10.0 * r as f64);
    pg.broadcast(&row, 1).unwrap();
    assert_eq!(values(&base), [0.0, 0.0, 0.0, 10.0, 10.0, 10.0], "broadcast from rank 1 into a view");

    let input = Tensor::from_slice(&[2.0 * r, 2.0 * r + 1.0]);
    let out = Tensor::zeros([4], (Kind::Float, tch::Device::Cpu));
    pg.all_gather_into(&out, &input).unwrap();
    assert_eq!(values(&out), [0.0, 1.0, 2.0, 3.0]);

    let input = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]) * (r as f64 + 1.0);
    let out = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu));
    pg.reduce_scatter_into(&out, &input).unwrap();
    assert_eq!(values(&out), if rank == 0 { [3.0, 6.0] } else { [9.0, 12.0] });

    // Started collectives: two all-gathers and a reduce-scatter in flight at once, waited for
    // in the order they started, each with torch's result.
    let g1 = pg
        .all_gather_start(Tensor::zeros([4], (Kind::Float, tch::Device::Cpu)), Tensor::from_slice(&[r, r]))
        .unwrap();
    let g2 = pg
        .all_gather_start(
            Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)),
            Tensor::from_slice(&[10.0 + r]),
        )
        .unwrap();
    let input = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]) * (r as f64 + 1.0);
    let rs = pg.reduce_scatter_start(Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)), input).unwrap();
    assert_eq!(values(&pg.wait(g1).unwrap()), [0.0, 0.0, 1.0, 1.0], "started all-gather");
    assert_eq!(values(&pg.wait(g2).unwrap()), [10.0, 11.0], "second started all-gather");
    assert_eq!(values(&pg.wait(rs).unwrap()), if rank == 0 { [3.0, 6.0] } else { [9.0, 12.0] });

    let t = Tensor::from_slice(&[1.5f64]);
    pg.all_reduce(&t, ReduceOp::Sum).unwrap();
    assert_eq!(Vec::<f64>::try_from(&t).unwrap(), [3.0], "float64");

    pg.barrier().unwrap();
    println!("collectives ok on rank {rank}");
    if rank == 1 {
        // Leave without a word: rank 0's next collective must fail, not hang.
        std::process::exit(0);
    }
    let t0 = Instant::now();
    let err = pg.all_reduce(&Tensor::ones([4], (Kind::Float, tch::Device::Cpu)), ReduceOp::Sum).unwrap_err();
    let waited = t0.elapsed();
    println!("rank 0 without its peer, after {:.1} s: {err:#}", waited.as_secs_f64());
    assert!(format!("{err:#}").starts_with("all_reduce failed: "), "{err:#}");
    assert!(waited < Duration::from_secs(20), "took {waited:?}");
}
