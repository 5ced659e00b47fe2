package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"syscall"
	"time"
)

// The supabase workload's client side is one event loop over raw
// non-blocking sockets (epoll), not a goroutine and a WebSocket library per
// virtual user: at 5,000 users that generator spent 90 % of its core in
// goroutine wake-ups, read timeouts and read system calls that found
// nothing, and its figures measured itself. Each arrival is still timed
// when its read returns, and each send carries the time just before its
// write, so late processing here shows up as latency, never hides it.

// rawSocket is one client WebSocket on a non-blocking file descriptor.
type rawSocket struct {
	fd      int
	key     [4]byte // this socket's masking key (clients must mask)
	partial []byte  // the start of a frame a read cut off
	out     []byte  // bytes a full send buffer did not take yet
	closed  bool
}

// dialRaw opens a WebSocket to addr (127.0.0.1:port) with a blocking
// handshake and returns it non-blocking, with any bytes the server sent
// after its 101 response in partial.
func dialRaw(addr, path string, deadline time.Time) (*rawSocket, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("address %q: want an IPv4 host:port", addr)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	s := &rawSocket{fd: fd}
	binary.LittleEndian.PutUint32(s.key[:], rand.Uint32())
	fail := func(err error) (*rawSocket, error) {
		_ = syscall.Close(fd)
		return nil, err
	}
	// As Go's net package: no Nagle delay on small frames.
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		return fail(err)
	}
	tv := syscall.NsecToTimeval(time.Until(deadline).Nanoseconds())
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
	// Blocking system calls here may be interrupted by the Go runtime's
	// preemption signal: an interrupted connect goes on in the background
	// (EALREADY until it is done, then EISCONN); reads and writes retry.
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	for err := syscall.Connect(fd, sa); err != nil && !errors.Is(err, syscall.EISCONN); err = syscall.Connect(fd, sa) {
		if !errors.Is(err, syscall.EINTR) && !errors.Is(err, syscall.EALREADY) {
			return fail(fmt.Errorf("connect: %w", err))
		}
		if time.Now().After(deadline) {
			return fail(errors.New("connect: timed out"))
		}
		time.Sleep(time.Millisecond)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if err := s.writeAll([]byte(req)); err != nil {
		return fail(fmt.Errorf("handshake: %w", err))
	}
	var resp []byte
	buf := make([]byte, 4096)
	for {
		n, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return fail(fmt.Errorf("handshake response: %v (after %q)", err, resp))
		}
		resp = append(resp, buf[:n]...)
		if i := bytes.Index(resp, []byte("\r\n\r\n")); i >= 0 {
			if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101")) {
				return fail(fmt.Errorf("handshake refused: %q", resp[:i]))
			}
			s.partial = bytes.Clone(resp[i+4:])
			return s, nil
		}
	}
}

// writeAll writes b with blocking semantics (dial time only).
func (s *rawSocket) writeAll(b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(s.fd, b)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// appendFrame appends a masked client frame (FIN set) of opcode op.
func (s *rawSocket) appendFrame(b []byte, op byte, payload []byte) []byte {
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, s.key[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= s.key[i&3]
	}
	return b
}

// readFrame reads one whole frame with blocking reads (dial time only),
// keeping whatever follows it in partial.
func (s *rawSocket) readFrame() (op byte, payload []byte, err error) {
	buf := make([]byte, 4096)
	for {
		if op, p, n := parseFrame(s.partial); n > 0 {
			payload = bytes.Clone(p)
			s.partial = s.partial[n:]
			return op, payload, nil
		}
		m, err := syscall.Read(s.fd, buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || m == 0 {
			return 0, nil, fmt.Errorf("read: %v", err)
		}
		s.partial = append(s.partial, buf[:m]...)
	}
}

// parseFrame parses the server frame (unmasked) at the start of b; n is 0
// when b does not hold a whole frame yet.
func parseFrame(b []byte) (op byte, payload []byte, n int) {
	if len(b) < 2 {
		return 0, nil, 0
	}
	op = b[0] & 0x0f
	size, hdr := int(b[1]&0x7f), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0
		}
		size, hdr = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0
		}
		size, hdr = int(binary.BigEndian.Uint64(b[2:])), 10
	}
	if len(b) < hdr+size {
		return 0, nil, 0
	}
	return op, b[hdr : hdr+size], hdr + size
}

// WebSocket opcodes.
const (
	opText   = 1
	opBinary = 2
	opClose  = 8
	opPing   = 9
	opPong   = 10
)

// eventLoop drives many rawSockets from one goroutine: epoll for reads,
// and writes made where they are asked for (queued only when a socket's
// send buffer is full).
type eventLoop struct {
	epfd    int
	socks   []*rawSocket // by file descriptor
	events  []syscall.EpollEvent
	buf     []byte
	backlog []*rawSocket // sockets with bytes in out
	// frame is called for every whole frame received, with the time its
	// read returned; it may call send. The payload is only valid during
	// the call.
	frame func(s *rawSocket, op byte, payload []byte, at time.Time)
	// sendErrors counts writes that failed outright.
	sendErrors int64
}

func newEventLoop(frame func(*rawSocket, byte, []byte, time.Time)) (*eventLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &eventLoop{epfd: epfd, events: make([]syscall.EpollEvent, 512), buf: make([]byte, 256<<10), frame: frame}, nil
}

// add makes s non-blocking and watches it; frames already received (in
// partial) are handled at the next poll.
func (l *eventLoop) add(s *rawSocket) error {
	if err := syscall.SetNonblock(s.fd, true); err != nil {
		return err
	}
	// Level-triggered: one read per readiness, however much it returns.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(s.fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return err
	}
	for len(l.socks) <= s.fd {
		l.socks = append(l.socks, nil)
	}
	l.socks[s.fd] = s
	return nil
}

// poll waits up to timeout for readable sockets and handles what they
// received; it returns how many sockets were readable.
func (l *eventLoop) poll(timeout time.Duration) int {
	l.flushBacklog()
	ms := max(int(timeout/time.Millisecond), 0) // -1 would wait forever
	n, err := syscall.EpollWait(l.epfd, l.events, ms)
	if err != nil {
		return 0 // EINTR
	}
	for _, ev := range l.events[:n] {
		if s := l.socks[ev.Fd]; s != nil && !s.closed {
			l.read(s)
		}
	}
	return n
}

func (l *eventLoop) read(s *rawSocket) {
	// A frame cut off by the last read goes first.
	k := copy(l.buf, s.partial)
	n, err := syscall.Read(s.fd, l.buf[k:])
	at := time.Now()
	if retryable(err) {
		return // level-triggered: the next poll reports it again
	}
	if err != nil || n == 0 {
		l.close(s)
		return
	}
	b := l.buf[:k+n]
	for {
		op, payload, m := parseFrame(b)
		if m == 0 {
			break
		}
		if op == opClose {
			l.close(s)
			return
		}
		l.frame(s, op, payload, at)
		b = b[m:]
	}
	s.partial = append(s.partial[:0], b...)
}

// send writes one frame of opcode op now, or queues it behind bytes a
// full send buffer has not taken yet.
func (l *eventLoop) send(s *rawSocket, op byte, payload []byte) {
	if s.closed {
		l.sendErrors++
		return
	}
	if len(s.out) > 0 {
		s.out = s.appendFrame(s.out, op, payload)
		return
	}
	var stack [256]byte
	f := s.appendFrame(stack[:0], op, payload)
	n, err := syscall.Write(s.fd, f)
	if err != nil && !retryable(err) {
		l.sendErrors++
		l.close(s)
		return
	}
	if n < len(f) {
		s.out = append(s.out, f[max(n, 0):]...)
		l.backlog = append(l.backlog, s)
	}
}

// flushBacklog retries the writes that found a full send buffer.
func (l *eventLoop) flushBacklog() {
	keep := l.backlog[:0]
	for _, s := range l.backlog {
		if s.closed {
			continue
		}
		n, err := syscall.Write(s.fd, s.out)
		if err != nil && !retryable(err) {
			l.sendErrors++
			l.close(s)
			continue
		}
		s.out = s.out[max(n, 0):]
		if len(s.out) > 0 {
			keep = append(keep, s)
		} else {
			s.out = nil
		}
	}
	clear(l.backlog[len(keep):])
	l.backlog = keep
}

// retryable: a non-blocking call that did nothing and may be retried.
func retryable(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
}

func (l *eventLoop) close(s *rawSocket) {
	if s.closed {
		return
	}
	s.closed = true
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
	_ = syscall.Close(s.fd)
}

// stop closes every socket and the loop.
func (l *eventLoop) stop() {
	for _, s := range l.socks {
		if s != nil {
			l.close(s)
		}
	}
	_ = syscall.Close(l.epfd)
}
