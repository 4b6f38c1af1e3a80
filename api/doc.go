// Package api is smsgate's HTTP surface: the submission API
// (POST /v1/messages, POST /v1/messages/dry-run, GET /v1/messages/{id}),
// health (/healthz, /readyz), the admin endpoints (/admin/...) and, for
// development, an in-memory webhook event sink (/dev/...).
//
// The package maps domain outcomes (compliance refusals, queue sentinels,
// Redis failures) onto the error codes of API.md section 2. It does no
// queueing or screening itself: it declares the small interfaces it needs
// (Queue, DeadLetters) and takes readiness and reload as functions.
//
// Live configuration is held in an immutable *State swapped atomically by
// Server.SetState, so a reload never exposes a half-built view.
//
// See README.md in this directory for the endpoints the project adds beyond
// API.md (admin, dev sink, error codes not_found and method_not_allowed).
package api
