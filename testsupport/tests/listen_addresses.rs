//! A test server also listens where it is asked to (the soak's workers reach it across a veth
//! pair); 127.0.0.2 stands in for such an address, as every 127/8 address is local on Linux.

use std::net::IpAddr;
use std::time::Duration;

use kosh_jobs_testsupport::redis_server::RedisServer;
use kosh_jobs_testsupport::resp::{RedisAddr, Resp};

#[test]
fn redis_answers_on_an_extra_address_also_after_a_restart() -> anyhow::Result<()> {
    let extra = IpAddr::from([127, 0, 0, 2]);
    let mut server = RedisServer::options().aof().also_listen_on(extra).start()?;
    let url = server.url_on(extra);
    assert_eq!(url, format!("redis://127.0.0.2:{}", server.port()));
    let ping = |url: &str| -> anyhow::Result<String> {
        let mut c = Resp::connect(&RedisAddr::parse(url)?, Duration::from_secs(2))?;
        Ok(format!("{:?}", c.command(&["PING"])?))
    };
    assert!(ping(&url)?.contains("PONG"), "{}", ping(&url)?);
    assert!(ping(&server.url())?.contains("PONG"));
    server.restart()?;
    assert!(ping(&url)?.contains("PONG"));
    Ok(())
}
