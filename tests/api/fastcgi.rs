//! A FastCGI responder for the nginx tests, in place of php-fpm.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FCGI_END_REQUEST: u8 = 3;
const FCGI_PARAMS: u8 = 4;
const FCGI_STDIN: u8 = 5;
const FCGI_STDOUT: u8 = 6;

/// A FastCGI responder in place of php-fpm, so that the shipped config's
/// FastCGI location is checked on the wire without PHP: answers every
/// request with every param nginx sent, in order, duplicates included,
/// as `{"params": [[name, value], ...]}`. FastCGI 1.0
/// (https://fastcgi-archives.github.io/FastCGI_Specification.html):
/// records with an 8-byte header (version 1, type, request id, content
/// length, padding length, reserved); BEGIN_REQUEST, then PARAMS and
/// STDIN, each ended by an empty record; the answer is STDOUT (a CGI
/// response: headers, blank line, body) then END_REQUEST.
pub async fn fastcgi_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(fastcgi_answer(sock));
        }
    });
    port
}

/// One record: its type, request id and content (padding read and dropped).
async fn fastcgi_record(sock: &mut TcpStream) -> std::io::Result<(u8, u16, Vec<u8>)> {
    let mut header = [0u8; 8];
    sock.read_exact(&mut header).await?;
    let id = u16::from_be_bytes([header[2], header[3]]);
    let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let mut content = vec![0u8; len + usize::from(header[6])];
    sock.read_exact(&mut content).await?;
    content.truncate(len);
    Ok((header[1], id, content))
}

fn fastcgi_frame(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let len = u16::try_from(content.len()).expect("a record holds at most 65535 bytes");
    let mut record = vec![1, kind];
    record.extend(id.to_be_bytes());
    record.extend(len.to_be_bytes());
    record.extend([0, 0]);
    record.extend(content);
    record
}

/// Name-value pairs (section 3.4): each length in one byte, or in four
/// with the high bit set.
fn fastcgi_params(data: &[u8]) -> Vec<(String, String)> {
    fn length(data: &[u8], i: &mut usize) -> Option<usize> {
        let first = *data.get(*i)?;
        if first < 0x80 {
            *i += 1;
            return Some(usize::from(first));
        }
        let four: [u8; 4] = data.get(*i..*i + 4)?.try_into().ok()?;
        *i += 4;
        usize::try_from(u32::from_be_bytes(four) & 0x7fff_ffff).ok()
    }
    fn text(data: &[u8], i: &mut usize, len: usize) -> Option<String> {
        let bytes = data.get(*i..*i + len)?;
        *i += len;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
    let (mut pairs, mut i) = (Vec::new(), 0);
    while i < data.len() {
        let Some(name_len) = length(data, &mut i) else {
            break;
        };
        let Some(value_len) = length(data, &mut i) else {
            break;
        };
        let Some(name) = text(data, &mut i, name_len) else {
            break;
        };
        let Some(value) = text(data, &mut i, value_len) else {
            break;
        };
        pairs.push((name, value));
    }
    pairs
}

async fn fastcgi_answer(mut sock: TcpStream) {
    let (mut params, mut id) = (Vec::new(), 1);
    let (mut params_done, mut stdin_done) = (false, false);
    while !(params_done && stdin_done) {
        let Ok((kind, request_id, content)) = fastcgi_record(&mut sock).await else {
            return;
        };
        id = request_id;
        match kind {
            FCGI_PARAMS if content.is_empty() => params_done = true,
            FCGI_PARAMS => params.extend(content),
            FCGI_STDIN if content.is_empty() => stdin_done = true,
            // BEGIN_REQUEST (role responder; no keep-conn from nginx
            // without fastcgi_keep_conn), and the request body.
            _ => {}
        }
    }
    let body = serde_json::json!({ "params": fastcgi_params(&params) });
    let out = format!("Content-Type: application/json\r\n\r\n{body}");
    let mut answer = Vec::new();
    for chunk in out.as_bytes().chunks(usize::from(u16::MAX)) {
        answer.extend(fastcgi_frame(FCGI_STDOUT, id, chunk));
    }
    answer.extend(fastcgi_frame(FCGI_STDOUT, id, &[]));
    // appStatus 0, protocolStatus REQUEST_COMPLETE, reserved.
    answer.extend(fastcgi_frame(FCGI_END_REQUEST, id, &[0; 8]));
    let _ = sock.write_all(&answer).await;
}
