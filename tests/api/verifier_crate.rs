//! The verifier crate embedded in an API, in process: the actix-web
//! extractor and the tower layer admit live tokens, refuse revoked,
//! forged and missing ones, and fail closed (503) when the verifier has
//! not heard Recall.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use recall_verifier::tower::VerifierLayer;
use recall_verifier::{Config, Principal, Verifier};
use tower::{Layer, ServiceExt};

use crate::feed::{create_service, post_204, user};
use crate::helpers::{eventually, Backend, Kind};

async fn started(base: &str, token: &str) -> Verifier {
    let v = Verifier::new(Config::new(vec![base.to_owned()], token)).unwrap();
    v.start();
    let ready = eventually(Duration::from_secs(10), || async { v.is_fresh() }).await;
    assert!(ready.is_some(), "the verifier never caught up");
    v
}

/// A tower service that answers 200 with the principal's user id.
fn app(
    v: &Verifier,
) -> impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone {
    let inner = tower::service_fn(|req: Request<String>| async move {
        let who = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.user_id.to_string())
            .unwrap_or_default();
        Ok::<_, Infallible>(Response::new(who))
    });
    VerifierLayer::new(v.clone()).layer(inner)
}

async fn call(
    svc: impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible>,
    access: Option<&str>,
) -> (u16, String) {
    let mut req = Request::builder().uri("/orders");
    if let Some(a) = access {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    let res = svc.oneshot(req.body(String::new()).unwrap()).await.unwrap();
    (res.status().as_u16(), res.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_admits_live_tokens_only() {
    let b = Backend::new(Kind::Sqlite).await;
    let recall = b.spawn().await;
    let (_, token) = create_service(&recall, "tower").await;
    let v = started(&recall.base, &token).await;
    let s = user(&recall, "tower").await;
    let live = eventually(Duration::from_secs(5), || async {
        call(app(&v), Some(&s.access)).await.0 == 200
    })
    .await;
    assert!(live.is_some());
    assert_eq!(
        call(app(&v), Some(&s.access)).await,
        (200, s.user_id.clone())
    );
    assert_eq!(call(app(&v), None).await.0, 401);
    assert_eq!(call(app(&v), Some("a.b.c")).await.0, 401);
    // alg none, with a real-looking payload: refused before any signature work.
    let none = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0",
        s.access.split('.').nth(1).unwrap()
    );
    assert_eq!(call(app(&v), Some(&none)).await.0, 401);
    post_204(&recall, "/v1/auth/logout", &s.access).await;
    let gone = eventually(Duration::from_secs(3), || async {
        call(app(&v), Some(&s.access)).await.0 == 401
    })
    .await;
    assert!(gone.is_some(), "the layer kept admitting a revoked token");
    // A lock answers 403, as Recall does.
    let l = user(&recall, "tower-lock").await;
    let res = recall
        .post(
            &format!("/v1/admin/users/{}/lock", l.user_id),
            Some(crate::helpers::ADMIN_TOKEN),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(res.status, 200);
    let locked = eventually(Duration::from_secs(3), || async {
        call(app(&v), Some(&l.access)).await.0 == 403
    })
    .await;
    assert!(locked.is_some());
    // With Recall gone, the verifier fails closed within its bound.
    let live = user(&recall, "tower-live").await;
    let fresh = eventually(Duration::from_secs(5), || async {
        call(app(&v), Some(&live.access)).await.0 == 200
    })
    .await;
    assert!(fresh.is_some());
    recall.stop().await;
    let closed = eventually(Duration::from_secs(10), || async {
        call(app(&v), Some(&live.access)).await.0 == 503
    })
    .await;
    assert!(
        closed.is_some(),
        "the layer kept answering with Recall gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actix_extractor_admits_live_tokens_only() {
    use actix_web::{test, web, App, HttpResponse};
    use recall_verifier::actix::Authenticated;

    let b = Backend::new(Kind::Sqlite).await;
    let recall = b.spawn().await;
    let (_, token) = create_service(&recall, "actix").await;
    let v = started(&recall.base, &token).await;
    let s = user(&recall, "actix").await;
    let svc =
        test::init_service(App::new().app_data(web::Data::new(v.clone())).route(
            "/orders",
            web::get().to(|u: Authenticated| async move {
                HttpResponse::Ok().body(u.0.user_id.to_string())
            }),
        ))
        .await;
    let get = |access: Option<&str>| {
        let mut req = test::TestRequest::get().uri("/orders");
        if let Some(a) = access {
            req = req.insert_header(("Authorization", format!("Bearer {a}")));
        }
        req.to_request()
    };
    let ready = eventually(Duration::from_secs(5), || async { v.is_fresh() }).await;
    assert!(ready.is_some());
    let res = test::call_service(&svc, get(Some(&s.access))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, s.user_id.as_bytes());
    let res = test::call_service(&svc, get(None)).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    post_204(&recall, "/v1/auth/logout", &s.access).await;
    let mut revoked = false;
    for _ in 0..60 {
        if test::call_service(&svc, get(Some(&s.access)))
            .await
            .status()
            == 401
        {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(revoked, "the extractor kept admitting a revoked token");
    recall.stop().await;
}
