//! Sockets: non-blocking TCP connects from chosen source addresses, handed
//! to glommio, and plain-words names for socket errors.
//!
//! A source address is bound with `IP_BIND_ADDRESS_NO_PORT`, so the kernel
//! picks the port at `connect` time from the (source, destination) pair's
//! own port space: with K source addresses one run can open about K × 64k
//! connections to a single broker port.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::AsRawFd;

use glommio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// Starts a TCP connect and returns the stream at once. The connect
/// completes in the background; the first write waits for it (and fails
/// with the connect's error), so the caller's CONNECT write doubles as
/// the wait for the TCP handshake.
pub fn start_connect(broker: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let domain = if broker.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    if let Some(src) = source {
        if src.is_ipv4() {
            set_bind_address_no_port(&socket)?;
        }
        socket.bind(&SocketAddr::new(src, 0).into())?;
    }
    match socket.connect(&broker.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from(socket))
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd, a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A short, stable name for a socket error, used as a tally key.
pub fn reason(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => return "too many open files".into(),
        Some(libc::EADDRNOTAVAIL) => return "no local address/port available".into(),
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => return "unreachable".into(),
        Some(libc::ETIMEDOUT) => return "tcp timeout".into(),
        _ => {}
    }
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by broker".into(),
        ConnectionAborted => "connection aborted".into(),
        BrokenPipe => "broken pipe (broker closed)".into(),
        UnexpectedEof => "connection closed by broker".into(),
        TimedOut => "timeout".into(),
        _ => format!("io error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_stable() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(reason(&refused), "connection refused");
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(reason(&emfile), "too many open files");
    }
}
