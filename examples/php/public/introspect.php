<?php
// The same API without the sidecar: PHP checks the bearer token itself,
// on every request, by asking Recall (RFC 7662 introspection). nginx
// passes this route to PHP unprotected (examples/php/nginx.conf).
//
//   GET /introspect/me  ->  200 {"user_id": "...", "session_id": "..."}
//                           401 a missing, bad, expired or revoked token
//                           503 Recall unreachable, failing or stale
//
// Settings (php-fpm pool: env[NAME] = value):
//   RECALL_INTROSPECTION_URL  default http://127.0.0.1:8080/oauth/introspect
//   RECALL_SERVICE_ID         service_id of `POST /v1/admin/services`
//   RECALL_SERVICE_TOKEN      its token (shown once)

declare(strict_types=1);

require __DIR__ . '/../lib/recall.php';

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
if ($path !== '/introspect/me') {
    json_error(404, 'not_found', "no route $path");
}
if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'GET') {
    json_error(405, 'method_not_allowed', 'GET only', ['Allow' => 'GET']);
}

$token = bearer_token();
if ($token === null) {
    unauthorized('missing bearer token');
}

try {
    $answer = introspect($token);
} catch (RecallUnavailable $e) {
    error_log("recall: $e");
    unavailable('cannot check the token now; retry shortly');
} catch (LogicException $e) {
    error_log("recall: {$e->getMessage()}");
    json_error(500, 'server_error', 'token check misconfigured');
}

if ($answer['active'] !== true) {
    // Revoked (logout, admin, lock), expired, forged: Recall says no.
    unauthorized('the token is not active');
}
if (isset($answer['cnf']) || strcasecmp((string) ($answer['token_type'] ?? 'Bearer'), 'Bearer') !== 0) {
    // A DPoP-bound token needs its proof checked against this request:
    // this route does not do that (the sidecar does).
    unauthorized('a DPoP-bound token: use the sidecar route');
}

json_response(200, ['user_id' => $answer['sub'], 'session_id' => $answer['sid']]);
