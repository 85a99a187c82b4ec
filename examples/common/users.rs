//! The benchmarks' users: one password for all, registered through
//! Recall's service, and the login input of the i-th of them. Imports only
//! Recall's service and events.

use recall::events::Meta;
use recall::service::{LoginInput, Recall};
use uuid::Uuid;

/// Every benchmark user's password.
pub const PASSWORD: &str = "correct horse battery";

/// Registers `n` users with fresh names (`bench-<i>-<random>`); their names.
pub async fn register_users(recall: &Recall, n: usize) -> anyhow::Result<Vec<String>> {
    let mut users = Vec::new();
    for i in 0..n {
        let name = format!("bench-{i}-{}", &Uuid::new_v4().simple().to_string()[..8]);
        recall
            .auth()
            .register(&name, PASSWORD.into(), &Meta::default())
            .await
            .map_err(|e| anyhow::anyhow!("register: {e}"))?;
        users.push(name);
    }
    Ok(users)
}

/// The login of the `i`-th user, round robin over `users`.
pub fn login_input(users: &[String], i: usize) -> LoginInput {
    LoginInput {
        username: users[i % users.len()].clone(),
        password: PASSWORD.into(),
        client_type: recall::service::ClientType::Web,
        device_id: None,
        user_agent: None,
        ip: None,
        dpop: Default::default(),
    }
}
