//! "May we send?" lives in two places: the pure rule (`SendRefusal::decide`) that explains
//! refusals and backs the unit tests' fake store, and the DynamoDB condition of the claim. For
//! every state a user can be in, against moto, the two must agree.

use std::sync::Arc;

use mailconfirm::domain::user::SendRefusal;
use mailconfirm::domain::{ClientId, EmailAddress, SendRequirements, SignUp, UnixTime, User, UserId};
use mailconfirm::ports::{ClaimCondition, Confirmations, CreateOutcome, DeliveryFeedback, SendClaims, UserRegistry};
use mailconfirm::store::DynamoStore;
use mailconfirm_local::harness::TestStack;

/// The states of a user before a claim.
#[derive(Debug, Clone, Copy)]
enum State {
    Missing,
    Pending {
        cooldown: Option<i64>,
    },
    /// Pending, with SES's hard bounce recorded for the address.
    Bounced {
        cooldown: Option<i64>,
    },
    Confirmed,
}

async fn arrange(
    store: &DynamoStore,
    stack: &TestStack,
    state: State,
    client: Option<&str>,
    now: UnixTime,
) -> (UserId, EmailAddress, Option<User>) {
    let user_id = UserId::parse(&format!("rule-{}", stack.unique_email("u"))).unwrap();
    let email = EmailAddress::parse(&stack.unique_email("rule")).unwrap();
    let sign_up = SignUp {
        user_id: user_id.clone(),
        email: email.clone(),
        locale: None,
        client_id: client.map(|c| ClientId::parse(c).unwrap()),
        redirect_to: None,
    };
    let user = match state {
        State::Missing => return (user_id, email, None),
        State::Pending { cooldown } => {
            let until = cooldown.map(|offset| UnixTime(now.0 + offset));
            match store.create_pending_user(&sign_up, now, until, None).await.unwrap() {
                CreateOutcome::Created { user, .. } => user,
                other => panic!("{other:?}"),
            }
        }
        State::Bounced { cooldown } => {
            let until = cooldown.map(|offset| UnixTime(now.0 + offset));
            let CreateOutcome::Created { user, .. } =
                store.create_pending_user(&sign_up, now, until, None).await.unwrap()
            else {
                panic!("not created")
            };
            let report = mailconfirm::ports::DeliveryReport {
                state: mailconfirm::domain::DeliveryState::Bounced,
                kind: Some("Permanent".into()),
                sub_kind: None,
            };
            assert!(store.mark_undeliverable(&user.id, &user.email, &report, now).await.unwrap());
            User { delivery: mailconfirm::domain::DeliveryState::Bounced, ..user }
        }
        State::Confirmed => {
            let CreateOutcome::Created { user, .. } =
                store.create_pending_user(&sign_up, now, None, None).await.unwrap()
            else {
                panic!("not created")
            };
            store
                .confirm(
                    &user.id,
                    &user.email.tag(),
                    now,
                    &mailconfirm::domain::ConfirmedBy::new(mailconfirm::domain::ConfirmMethod::Admin, None, None),
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    (user_id, email, Some(user))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_claims_condition_and_the_pure_rule_agree_for_every_state() {
    let stack = TestStack::start().await;
    let store = DynamoStore::new(stack.aws.clone(), stack.table.clone());
    let store = Arc::new(store);
    let now = UnixTime::now();
    let states = [
        State::Missing,
        State::Pending { cooldown: None },
        State::Pending { cooldown: Some(30) },
        State::Pending { cooldown: Some(-30) },
        State::Pending { cooldown: Some(0) },
        State::Bounced { cooldown: None },
        State::Bounced { cooldown: Some(30) },
        State::Confirmed,
    ];
    let other = EmailAddress::parse("someone-else@example.com").unwrap();
    let web = ClientId::parse("web").unwrap();
    let app = ClientId::parse("app").unwrap();
    let mut compared = 0;
    for state in states {
        for user_client in [None, Some("web")] {
            for required_client in [None, Some(&web), Some(&app)] {
                for address_kind in 0..3 {
                    let (user_id, email, before) = arrange(&store, &stack, state, user_client, now).await;
                    let address = match address_kind {
                        0 => None,
                        1 => Some(&email),
                        _ => Some(&other),
                    };
                    let requirements = SendRequirements { client: required_client, address, command: None };
                    let expected = SendRefusal::decide(before.as_ref(), &requirements, now);
                    let claimed = store
                        .claim_send(
                            &user_id,
                            now,
                            UnixTime(now.0 + 60),
                            ClaimCondition::CooldownOver,
                            &requirements,
                            None,
                        )
                        .await
                        .unwrap();
                    let case = format!("{state:?}, user client {user_client:?}, {requirements:?}");
                    match (expected, claimed) {
                        (Ok(()), Ok(claim)) => assert_eq!(Some(claim.user), before, "{case}"),
                        (Err(refusal), Err(seen)) => {
                            assert_eq!(seen, before, "{case}: the refusal saw the user as it was");
                            assert_eq!(SendRefusal::explain(seen.as_ref(), &requirements, now), refusal, "{case}");
                        }
                        (expected, claimed) => panic!("{case}: rule says {expected:?}, the table {claimed:?}"),
                    }
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 8 * 2 * 3 * 3);
}
