//! The short soak CI runs (`mcpgw_e2e::soak`): dozens of sessions at once for 20 s, each calling
//! a federated upstream and a REST tool, listing, holding a standalone stream a moment and
//! opening a new session now and then; not one answer may be anything but a result. The long
//! one (1,000 sessions for 10 minutes, with the RSS bound) is `scripts/bench.sh --soak`.
//! Native-only.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_gets_only_results() {
    let report = mcpgw_e2e::soak::soak(40, 20).await.expect("soak");
    eprintln!("{}", report.summary());
    assert_eq!(report.errors, 0, "first errors: {:?}", report.first_errors);
    assert!(
        report.ok >= 300,
        "too little traffic to mean anything: {}",
        report.summary()
    );
    assert!(
        report.sessions_opened > 40 && report.streams > 0,
        "{}",
        report.summary()
    );
}
