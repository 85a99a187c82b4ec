<?php
// The API behind nginx: nginx asks the `recall verifier` sidecar about
// every request (auth_request) before it reaches PHP, and passes who the
// caller is as the FastCGI params HTTP_X_USER_ID and HTTP_X_SESSION_ID
// (examples/php/nginx.conf). PHP never sees a token that is revoked,
// expired or forged, and never sees the client's own X-User-Id.
//
//   GET /api/me  ->  200 {"user_id": "...", "session_id": "..."}

declare(strict_types=1);

require __DIR__ . '/../lib/recall.php';

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';

// Set by nginx from the sidecar's 204 (fastcgi_param), nowhere else.
$user_id = $_SERVER['HTTP_X_USER_ID'] ?? '';
$session_id = $_SERVER['HTTP_X_SESSION_ID'] ?? '';
if ($user_id === '' || $session_id === '') {
    // Only a request that did not go through auth_request gets here: a
    // location without it is a configuration error. Fail closed.
    unauthorized('not authenticated (is this location behind auth_request?)');
}

if ($path === '/api/me') {
    if ($method !== 'GET') {
        json_error(405, 'method_not_allowed', 'GET only', ['Allow' => 'GET']);
    }
    json_response(200, ['user_id' => $user_id, 'session_id' => $session_id]);
}

json_error(404, 'not_found', "no route $path");
