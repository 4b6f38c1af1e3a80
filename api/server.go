package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsgate/smsgate/queue"
)

// Queue is what the API needs from the message store (implemented by *queue.Queue).
type Queue interface {
	// NewMessageID returns an id for a message sent from from (the id
	// carries what Get needs to find it).
	NewMessageID(from string) string
	// BindIdempotencyKey ties an org's Idempotency-Key to the sender of its
	// first request; another sender (another body) gets
	// queue.ErrIdempotencyConflict.
	BindIdempotencyKey(ctx context.Context, org, key, from string) error
	// Enqueue stores a message atomically (idempotency, depth, opt-out, notice).
	Enqueue(ctx context.Context, req queue.EnqueueRequest) (queue.EnqueueResult, error)
	// Replay returns the response stored for an org's Idempotency-Key
	// first used with a request of this hash (found false: none).
	Replay(ctx context.Context, org, key, requestHash string) (response []byte, found bool, err error)
	// Get returns a stored message with its history, or queue.ErrNotFound.
	Get(ctx context.Context, id string) (*queue.Record, error)
	// IsOptedOut reports whether to opted out of messages from from.
	IsOptedOut(ctx context.Context, from, to string) (bool, error)
	// OptOut records that to opted out of messages from from.
	OptOut(ctx context.Context, from, to string) error
	// OptIn lifts an opt-out.
	OptIn(ctx context.Context, from, to string) error
	// OptOuts lists the numbers that opted out of messages from from.
	OptOuts(ctx context.Context, from string) ([]string, error)
}

// DeadLetter is one webhook event that exhausted its retries.
type DeadLetter struct {
	EventID   string    `json:"event_id"`
	Type      string    `json:"type"`
	OrgID     string    `json:"org"`
	URL       string    `json:"url"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	FailedAt  time.Time `json:"failed_at"`
	// Event is the JSON event body as it was POSTed (must be valid JSON or empty).
	Event json.RawMessage `json:"event,omitempty"`
}

// DeadLetters is what the admin endpoints need from the webhook dispatcher.
// The app adapts the webhook package to it.
type DeadLetters interface {
	// DeadLetters lists at most limit dead letters, newest first.
	DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error)
	// Redeliver puts a dead letter back for delivery; an error wrapping
	// ErrNotFound means there is no dead letter with that id.
	Redeliver(ctx context.Context, eventID string) error
}

// ErrNotFound is what a DeadLetters implementation wraps when an id is unknown.
var ErrNotFound = errors.New("not found")

// Options configure a Server.
type Options struct {
	// Addr to listen on; empty means the initial State's [http] listen.
	Addr string
	// State is the initial configuration view (required).
	State *State
	// Queue is the message store (required).
	Queue Queue
	// Ready reports whether the daemon can serve (Redis answers, a bind is
	// bound); nil means always ready.
	Ready func(ctx context.Context) error
	// Reload re-reads the configuration and installs it (SetState) on
	// success; an error wrapping *config.ValidationError is answered 422
	// with its problems. nil disables POST /admin/reload (404).
	Reload func(ctx context.Context) error
	// DeadLetters serves the webhook dead-letter endpoints; nil disables them.
	DeadLetters DeadLetters
	// QueueStats reports queue depth totals and the deepest senders for
	// GET /admin/queues (numbers are not metric labels, so they are here);
	// nil disables the endpoint.
	QueueStats func(ctx context.Context) (any, error)
	// DevSink enables the in-memory webhook sink under /dev/.
	DevSink bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer for the smsgate_api_* metrics; nil uses a fresh registry.
	Registerer prometheus.Registerer
}

// Server serves the HTTP API. Create it with New, run it with Serve or
// Start, stop it with SetNotReady then Shutdown.
type Server struct {
	state    atomic.Pointer[State]
	notReady atomic.Bool
	queue    Queue
	ready    func(ctx context.Context) error
	reload   func(ctx context.Context) error
	stats    func(ctx context.Context) (any, error)
	dead     DeadLetters
	now      func() time.Time
	log      *slog.Logger
	metrics  *metrics
	sink     *devSink
	ln       net.Listener
	srv      *http.Server
	handler  http.Handler

	// acceptTimeout bounds storing a submitted message (see handleSend).
	acceptTimeout time.Duration

	bufs sync.Pool // *[]byte request body buffers

	wg       sync.WaitGroup
	serveErr error
}

// New validates opts, builds the routes and binds the listener, so Addr is
// known when it returns (use "127.0.0.1:0" in tests).
func New(opts Options) (*Server, error) {
	if opts.State == nil {
		return nil, errors.New("api: options: State is required")
	}
	if opts.Queue == nil {
		return nil, errors.New("api: options: Queue is required")
	}
	s := &Server{
		queue:  opts.Queue,
		ready:  opts.Ready,
		reload: opts.Reload,
		stats:  opts.QueueStats,
		dead:   opts.DeadLetters,
		now:    opts.Now,
		log:    opts.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "api")
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(reg)
	if opts.DevSink {
		s.sink = newDevSink(devSinkSize)
	}
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.state.Store(opts.State)
	s.handler = s.routes()

	h := opts.State.cfg.HTTP
	addr := opts.Addr
	if addr == "" {
		addr = h.Listen
	}
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	// A submission must be stored, or known not to be, in time to answer
	// within the write timeout.
	s.acceptTimeout = min(maxAcceptTimeout, orDefault(h.WriteTimeout, 10*time.Second)/2)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: orDefault(h.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       orDefault(h.ReadTimeout, 10*time.Second),
		WriteTimeout:      orDefault(h.WriteTimeout, 10*time.Second),
		IdleTimeout:       orDefault(h.IdleTimeout, 60*time.Second),
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen %s: %w", addr, err)
	}
	s.ln = ln
	return s, nil
}

// maxAcceptTimeout is the longest a submission waits for Redis to store it
// (less when http.write_timeout is under twice this).
const maxAcceptTimeout = 5 * time.Second

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Addr is the address the listener is bound to ("127.0.0.1:port").
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler returns the routed handler (for tests and benchmarks that call
// ServeHTTP directly).
func (s *Server) Handler() http.Handler { return s.handler }

// SetState installs a new configuration view; requests in flight finish on
// the one they started with.
func (s *Server) SetState(st *State) {
	if st != nil {
		s.state.Store(st)
	}
}

// State returns the configuration view in force.
func (s *Server) State() *State { return s.state.Load() }

// SetNotReady makes /readyz answer 503 (lame duck) so load balancers stop
// sending traffic before Shutdown.
func (s *Server) SetNotReady() { s.notReady.Store(true) }

// Serve serves on the listener until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("api: serve: %w", err)
}

// Start runs Serve in a goroutine owned by the Server; Shutdown waits for it
// and returns its error.
func (s *Server) Start() {
	s.wg.Go(func() {
		if err := s.Serve(); err != nil {
			s.log.Error("http server stopped", "err", err)
			s.serveErr = err
		}
	})
}

// Shutdown stops accepting connections and waits, bounded by ctx, for
// requests in flight to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.notReady.Store(true)
	err := s.srv.Shutdown(ctx)
	_ = s.ln.Close() // in case Serve never ran; already closed otherwise
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return s.serveErr
}

// routes builds the mux. Each handler is wrapped with its fixed route label.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.HandlerFunc) {
		mux.Handle(pattern, s.instrument(route, h))
	}
	handle("POST /v1/messages", "send", s.handleSend)
	handle("POST /v1/messages/dry-run", "dry_run", s.handleDryRun)
	handle("GET /v1/messages/{id}", "get", s.handleGet)
	handle("GET /healthz", "healthz", s.handleHealthz)
	handle("GET /readyz", "readyz", s.handleReadyz)

	handle("POST /admin/reload", "admin", s.admin(s.handleReload))
	handle("GET /admin/numbers", "admin", s.admin(s.handleNumbers))
	handle("GET /admin/numbers/{e164}", "admin", s.admin(s.handleNumber))
	handle("GET /admin/opt-outs", "admin", s.admin(s.handleOptOuts))
	handle("POST /admin/opt-outs", "admin", s.admin(s.handleOptOutAdd))
	handle("DELETE /admin/opt-outs", "admin", s.admin(s.handleOptOutRemove))
	handle("GET /admin/queues", "admin", s.admin(s.handleQueues))
	handle("GET /admin/dead-letters", "admin", s.admin(s.handleDeadLetters))
	handle("POST /admin/dead-letters/{event_id}/redeliver", "admin", s.admin(s.handleRedeliver))

	if s.sink != nil {
		handle("POST /dev/events", "dev", s.sink.handlePost)
		handle("GET /dev/events", "dev", s.sink.handleList)
		handle("GET /dev/{$}", "dev", s.sink.handlePage)
	}
	handle("/", "other", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
				Message: r.URL.Path + " does not take " + r.Method + "; use " + strings.Join(allow, " or ") + "."})
			return
		}
		writeError(w, notFound("No such endpoint: "+r.Method+" "+r.URL.Path+". See docs/API.md (and docs/OPERATIONS.md for admin routes) for the routes."))
	})
	return mux
}

// allowedMethods lists the methods that have a route for r's path other
// than the catch-all, for a 405 and its Allow header.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

// statusWriter records the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	rm := s.metrics.route(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := statusWriter{ResponseWriter: w}
		h(&sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		rm.observe(sw.status, time.Since(start))
	})
}

// readBody reads at most MaxBodyBytes into a pooled buffer. release must be
// called when the bytes are no longer used.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), e *Error) {
	if r.ContentLength > MaxBodyBytes {
		return nil, nil, tooLarge()
	}
	bp := s.bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	rd := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = buf[:0]
			s.bufs.Put(bp)
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, nil, tooLarge()
			}
			return nil, nil, invalid("", "The request body could not be read: "+err.Error()+".")
		}
	}
	return buf, func() {
		if cap(buf) <= 4*MaxBodyBytes {
			*bp = buf[:0]
			s.bufs.Put(bp)
		}
	}, nil
}

func tooLarge() *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge,
		Message: fmt.Sprintf("The request body is over %d bytes (64 KiB); send less text or fewer media entries.", MaxBodyBytes)}
}
