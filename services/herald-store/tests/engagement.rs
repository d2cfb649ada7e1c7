//! Engagement claims against the real database: of many concurrent claims one holds; a done
//! claim answers every later one; a released claim is claimed again at once; a stale claim is
//! taken over, a live one is not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use std::time::Duration;

use herald_store::engagement::{Claim, EngagementMarks, Mark};
use herald_test_support::HeraldEnv;

const TTL: Duration = Duration::from_secs(3600);
const STALE: Duration = Duration::from_secs(30);

fn mark<'a>(dispatch_id: &'a str, kind: &'a str) -> Mark<'a> {
    Mark {
        tenant: "acme",
        dispatch_id,
        kind,
    }
}

async fn claim(
    marks: &EngagementMarks,
    dispatch_id: &str,
    kind: &str,
    at: chrono::DateTime<Utc>,
) -> Claim {
    marks
        .claim(mark(dispatch_id, kind), at, TTL, STALE)
        .await
        .unwrap()
}

fn held(claim: &Claim) -> Option<(&str, bool)> {
    match claim {
        Claim::Held { token, taken_over } => Some((token, *taken_over)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claim_holds_and_a_stale_one_is_taken_over() {
    // No herald binary is run by this test.
    let env = HeraldEnv::new("herald", "engagement");
    let config = env.store_config();
    let session = env.migrated_session().await;
    let marks = EngagementMarks::prepare(session, &config).await.unwrap();
    let now = Utc::now();

    // Concurrent claims of one dispatch's open: exactly one holds, the others find it busy.
    let claims = futures::future::join_all(
        (0..4).map(|_| marks.claim(mark("e-1:email", "open"), now, TTL, STALE)),
    )
    .await;
    let claims: Vec<Claim> = claims.into_iter().map(Result::unwrap).collect();
    let holders: Vec<(&str, bool)> = claims.iter().filter_map(held).collect();
    assert_eq!(holders.len(), 1, "{claims:?}");
    assert_eq!(claims.iter().filter(|c| **c == Claim::Busy).count(), 3);
    let (token, taken_over) = holders[0];
    assert!(!taken_over);

    // Done: every later claim says so, also when the claim is old. The click is separate.
    marks
        .mark_done(mark("e-1:email", "open"), token, TTL)
        .await
        .unwrap();
    let later = now + chrono::Duration::hours(1);
    assert_eq!(claim(&marks, "e-1:email", "open", later).await, Claim::Done);
    let click = claim(&marks, "e-1:email", "click", now).await;
    assert!(held(&click).is_some(), "{click:?}");

    // Released (the publish failed): the next claim holds at once.
    let first = claim(&marks, "e-2:email", "open", now).await;
    let (token, _) = held(&first).unwrap();
    marks
        .release(mark("e-2:email", "open"), token)
        .await
        .unwrap();
    let again = claim(&marks, "e-2:email", "open", now).await;
    assert_eq!(held(&again).map(|(_, t)| t), Some(false), "{again:?}");

    // Left neither done nor released (its replica died): busy while it may still publish,
    // taken over once stale; the dead holder can no longer mark or release it.
    let dead = claim(&marks, "e-3:email", "open", now).await;
    let (dead_token, _) = held(&dead).unwrap();
    let soon = now + chrono::Duration::seconds(5);
    assert_eq!(claim(&marks, "e-3:email", "open", soon).await, Claim::Busy);
    let stale = now + chrono::Duration::seconds(31);
    let taken = claim(&marks, "e-3:email", "open", stale).await;
    let (new_token, taken_over) = held(&taken).unwrap();
    assert!(taken_over);
    marks
        .release(mark("e-3:email", "open"), dead_token)
        .await
        .unwrap();
    assert_eq!(
        claim(&marks, "e-3:email", "open", stale).await,
        Claim::Busy,
        "the dead holder's release must not remove the new claim"
    );
    marks
        .mark_done(mark("e-3:email", "open"), new_token, TTL)
        .await
        .unwrap();
    assert_eq!(claim(&marks, "e-3:email", "open", stale).await, Claim::Done);
}
