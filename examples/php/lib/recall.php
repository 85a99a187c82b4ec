<?php
// Helpers shared by the two entry points in public/. Plain PHP 8 and
// ext-curl: no framework, no composer. Outside public/, so nginx never
// serves this file.

declare(strict_types=1);

/** Recall (or the sidecar) could not say whether the token is good. */
final class RecallUnavailable extends RuntimeException
{
}

/** Sends a JSON answer and ends the request. */
function json_response(int $status, array $body, array $headers = []): never
{
    http_response_code($status);
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    foreach ($headers as $name => $value) {
        header("$name: $value");
    }
    echo json_encode($body, JSON_UNESCAPED_SLASHES), "\n";
    exit;
}

/** Recall's error shape: {"error": "...", "error_description": "..."}. */
function json_error(int $status, string $error, string $description, array $headers = []): never
{
    json_response($status, ['error' => $error, 'error_description' => $description], $headers);
}

/** 401 as RFC 6750 says, with the same body Recall answers. */
function unauthorized(string $description): never
{
    json_error(401, 'invalid_token', $description, [
        'WWW-Authenticate' => 'Bearer error="invalid_token"',
    ]);
}

/** 503 fail closed: better no answer than a logged-out user let in. */
function unavailable(string $description): never
{
    json_error(503, 'unavailable', $description, ['Retry-After' => '1']);
}

/** The token of `Authorization: Bearer <token>`, or null. */
function bearer_token(): ?string
{
    // nginx passes the header as the FastCGI param HTTP_AUTHORIZATION.
    $header = $_SERVER['HTTP_AUTHORIZATION'] ?? '';
    if (preg_match('/^Bearer\s+([A-Za-z0-9\-._~+\/]+=*)\s*$/i', $header, $m) !== 1) {
        return null;
    }
    return $m[1];
}

/** A setting from the environment (php-fpm pool: env[NAME] = value). */
function setting(string $name, ?string $default = null): string
{
    $value = getenv($name);
    if ($value === false || $value === '') {
        if ($default === null) {
            throw new LogicException("$name is not set (php-fpm pool: env[$name] = ...)");
        }
        return $default;
    }
    return $value;
}

/**
 * Asks Recall whether $token is good right now (RFC 7662 token
 * introspection): POST the token, form-encoded, authenticated with a
 * service credential as HTTP Basic (service_id:token, RFC 6749 2.3.1).
 * Returns the introspection response: ['active' => false] or
 * ['active' => true, 'sub' => user id, 'sid' => session id, 'exp' => ..., ...].
 * Throws RecallUnavailable when Recall does not answer or answers 5xx,
 * LogicException when the service credential is refused (a
 * configuration error, not the client's).
 */
function introspect(string $token): array
{
    $url = setting('RECALL_INTROSPECTION_URL', 'http://127.0.0.1:8080/oauth/introspect');
    // Both halves are form-urlencoded before Basic (RFC 6749 2.3.1).
    $basic = base64_encode(urlencode(setting('RECALL_SERVICE_ID')) . ':'
        . urlencode(setting('RECALL_SERVICE_TOKEN')));
    $curl = curl_init($url);
    curl_setopt_array($curl, [
        CURLOPT_POST => true,
        // The client's address: a network-bound token is active only for
        // an address inside its session's network.
        CURLOPT_POSTFIELDS => http_build_query(array_filter([
            'token' => $token,
            'client_ip' => $_SERVER['REMOTE_ADDR'] ?? '',
        ], 'strlen')),
        CURLOPT_HTTPHEADER => [
            "Authorization: Basic $basic",
            'Content-Type: application/x-www-form-urlencoded',
            'Accept: application/json',
        ],
        CURLOPT_RETURNTRANSFER => true,
        // A hop on every request: keep it short, and fail closed past it.
        CURLOPT_CONNECTTIMEOUT_MS => 500,
        CURLOPT_TIMEOUT_MS => 2000,
        CURLOPT_FOLLOWLOCATION => false,
    ]);
    $body = curl_exec($curl);
    $status = curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
    $error = curl_error($curl);
    curl_close($curl);

    if ($body === false) {
        throw new RecallUnavailable("introspection did not answer: $error");
    }
    if ($status >= 500 || $status === 429) {
        throw new RecallUnavailable("introspection answered $status");
    }
    if ($status === 401 || $status === 403) {
        throw new LogicException("introspection refused our service credential ($status): $body");
    }
    $answer = json_decode((string) $body, true);
    if ($status !== 200 || !is_array($answer) || !is_bool($answer['active'] ?? null)) {
        throw new LogicException("introspection answered $status: $body");
    }
    return $answer;
}
