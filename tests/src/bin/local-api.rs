//! `local-api`: serves every route of the template on loopback against moto, with the
//! developer's tools under `/_local/`. Started by `scripts/run`, which starts moto first.

use std::sync::Arc;

use mailconfirm::aws::AwsClients;
use mailconfirm_local::server::{LocalApi, serve};
use mailconfirm_local::stack::{Functions, LOCAL_SENDER, OVERRIDABLE, create_table, local_env, verify_sender};
use mailconfirm_local::template::Template;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let address = std::env::var("LOCAL_API_ADDRESS").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&address).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let table = std::env::var("TABLE_NAME").unwrap_or_else(|_| "mailconfirm-local".to_owned());
    let mut env = local_env(&table, &base_url);
    // Any variable of the configuration table may be overridden from the environment.
    for (name, value) in std::env::vars() {
        if OVERRIDABLE.contains(&name.as_str()) {
            env.insert(name, value);
        }
    }
    env.insert("PUBLIC_BASE_URL".into(), base_url.clone());

    let template = Template::load()?;
    let aws = Arc::new(AwsClients::new());
    create_table(&aws, &template, &table).await?;
    verify_sender(&aws, LOCAL_SENDER).await?;
    let functions = Functions::build(&env, Arc::new(mailconfirm::ports::SystemClock))?;
    let api = Arc::new(LocalApi::new(&functions, &template, &env, Arc::new(mailconfirm::ports::SystemClock)).await?);
    // The change stream, delivered as Lambda's event source mapping would: in order, every 250 ms.
    // DynamoDB's TTL, which in AWS takes up to a few days, runs here every few seconds.
    let stream = api.stream.clone();
    let dynamodb = aws.dynamodb().await.clone();
    tokio::spawn(async move {
        let mut round = 0u32;
        loop {
            round = round.wrapping_add(1);
            if round.is_multiple_of(20)
                && let Err(err) = stream.expire(&dynamodb, mailconfirm::domain::UnixTime::now()).await
            {
                tracing::warn!(error = format!("{err:#}"), "could not run the TTL sweep");
            }
            if let Err(err) = stream.deliver().await {
                tracing::warn!(error = format!("{err:#}"), "could not deliver the table's stream");
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    });
    println!("mailconfirm local API on {base_url}");
    for route in api.gateway.route_specs() {
        println!("  {:<6} {base_url}{}  ({})", route.method, route.path, route.binary);
    }
    println!("  POST   {base_url}/_local/signup      publish a sign-up event");
    println!("  POST   {base_url}/_local/token       mint an access token");
    println!("  GET    {base_url}/_local/users/ID    a user as stored");
    println!("  GET    {base_url}/_local/inbox       the mail sent (HTML; JSON at /_local/inbox.json)");
    println!("  GET    {base_url}/_local/openapi.json  the OpenAPI description of the routes");
    println!("  GET    {base_url}/_local/events.json   the events published to EventBridge");
    println!("  POST   {base_url}/_local/ses-feedback  post an SES bounce or complaint (as SNS delivers it)");
    println!("  POST   {base_url}/_local/ttl-sweep     remove what DynamoDB's TTL would remove now");
    serve(listener, api).await
}
