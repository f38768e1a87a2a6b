//! Under concurrent requests a cooldown lets exactly one e-mail through.

use mailconfirm_local::harness::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sends_for_one_user_send_exactly_one_mail() {
    // A user with no mail yet: signed up while mail was off, so no cooldown is running.
    let quiet = TestStack::start_with(|env| {
        env.insert("EMAIL_ENABLED".into(), "false".into());
    })
    .await;
    let (user_id, email) = quiet.signed_up_user(None).await;
    let stack = TestStack::start_with(|env| {
        env.insert("TABLE_NAME".into(), quiet.table.clone());
    })
    .await;
    let token = stack.access_token(&user_id);

    let requests = (0..50).map(|_| {
        let request = stack.http.post(stack.url("/api/auth/email/verification/send")).bearer_auth(&token).send();
        async move { request.await.expect("a response").status().as_u16() }
    });
    let mut statuses: Vec<u16> = futures_join_all(requests).await;
    statuses.sort_unstable();

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 49, "{statuses:?}");
    assert_eq!(stack.mails_to(&email).await.len(), 1);
}

/// Runs all futures concurrently on the runtime and collects their outputs.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("the request task"));
    }
    outputs
}
