//! A bare HTTP/1.1 server on loopback for answers no framework would send: bodies of hundreds
//! of megabytes, made as they are written.

use std::net::SocketAddr;

/// What the raw server answers to one request.
pub enum Answer {
    Json(String),
    /// `size` bytes of a JSON string, made as they are sent; announced in `Content-Length` or
    /// not (then the body ends when the connection closes).
    Huge {
        size: u64,
        announced: bool,
    },
}

/// A bare HTTP/1.1 server on loopback, one thread per connection, answering each request with
/// what `route` says for its method and path. A huge answer is generated as it is written, so
/// the test itself holds none of it.
pub fn raw_server(route: fn(&str, &str) -> Answer) -> SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let address = listener.local_addr().expect("a bound address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("a socket clone"));
                let mut request_line = String::new();
                reader.read_line(&mut request_line).ok()?;
                let mut words = request_line.split_whitespace();
                let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).ok()?;
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                reader.read_exact(&mut vec![0; length]).ok()?;
                let mut stream = stream;
                match route(&method, &path) {
                    Answer::Json(body) => write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \
                         {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .ok()?,
                    Answer::Huge { size, announced } => {
                        let length = if announced {
                            format!("Content-Length: {size}\r\n")
                        } else {
                            String::new()
                        };
                        write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\
                             Connection: close\r\n\r\n{{\"trackingId\": \""
                        )
                        .ok()?;
                        let chunk = [b'7'; 64 << 10];
                        let mut sent = 0;
                        // Stops when imagegen hangs up, as it must long before the end.
                        while sent < size {
                            stream.write_all(&chunk).ok()?;
                            sent += chunk.len() as u64;
                        }
                    }
                }
                Some(())
            });
        }
    });
    address
}
