//! Benchmark: start-up time of the `large` profile and pages per second served without latency.
//! Prints figures; asserts nothing. Run: `cargo bench -p cairn-graph-sim --bench pages`.

use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::{Profile, SimConfig, Simulator};
use std::time::Instant;

async fn read_all(base: &str, token: &str, url: &str) -> (usize, usize, f64) {
    let mut c = Client::new(base).with_token(token);
    let t0 = Instant::now();
    let mut next = url.to_string();
    let (mut pages, mut objects) = (0, 0);
    loop {
        let r = c.get(&next).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        pages += 1;
        objects += v["value"].as_array().map(|a| a.len()).unwrap_or(0);
        match v["@odata.nextLink"].as_str().or(None) {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    (pages, objects, t0.elapsed().as_secs_f64())
}

fn main() {
    let profile = std::env::var("SIM_BENCH_PROFILE")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(Profile::Large);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t0 = Instant::now();
        let sim = Simulator::start(SimConfig::new(profile, 1)).await.unwrap();
        let startup = t0.elapsed();
        let (users, groups, members) = sim.with_tenant(|t| {
            use cairn_graph_sim::model::Kind;
            let g = t.map(Kind::Group);
            (t.count_live(Kind::User), g.len(), g.values().map(|x| x.link("members").count()).sum::<usize>())
        });
        println!("profile {profile:?}: started in {:.2} s ({users} users, {groups} groups, {members} memberships)", startup.as_secs_f64());
        let token = sim.access_token();
        let base = sim.base_url();
        for (label, url) in [
            ("users, default page (100)", "/v1.0/users".to_string()),
            ("users, $top=999", "/v1.0/users?$top=999".to_string()),
            ("users, $top=999&$select=id,displayName", "/v1.0/users?$top=999&$select=id,displayName".to_string()),
            ("groups, $top=999", "/v1.0/groups?$top=999".to_string()),
            ("users/delta initial round", "/v1.0/users/delta".to_string()),
        ] {
            let (pages, objects, secs) = read_all(&base, &token, &url).await;
            println!("{label:<42} {pages:>5} pages {objects:>7} objects {secs:>7.2} s  {:>8.1} pages/s {:>9.0} objects/s", pages as f64 / secs, objects as f64 / secs);
        }
        // Four lists read in parallel.
        let t0 = Instant::now();
        let mut tasks = vec![];
        for url in ["/v1.0/users?$top=999", "/v1.0/groups?$top=999", "/v1.0/servicePrincipals?$top=999", "/v1.0/applications?$top=999"] {
            let (b, t) = (base.clone(), token.clone());
            tasks.push(tokio::spawn(async move { read_all(&b, &t, url).await }));
        }
        let mut pages = 0;
        for t in tasks {
            pages += t.await.unwrap().0;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!("{:<42} {pages:>5} pages {:>7} {secs:>7.2} s  {:>8.1} pages/s", "4 lists in parallel ($top=999)", "", pages as f64 / secs);
        let s = sim.stats();
        println!("simulator stats: {} graph requests, {} pages, {} objects, {} RU", s.graph_requests, s.pages, s.objects_returned, s.ru_spent);
    });
}
