package testharness

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// RunSimulate implements `smsgate simulate`: it starts a Simulator from the
// flags in args, prints the listen address on its own line to stdout, logs
// connection events after it, and runs until ctx is done.
//
//	-listen ADDR        (default 127.0.0.1:2775)
//	-system-id ID       (default smsgate)
//	-password PW        (default secret)
//	-receipt-delay D    delay of delivery receipts (default 0)
//	-decimal-ids        decimal message ids instead of hex
//	-max-tps N          per-account (system_id) submit_sm/s above which ESME_RTHROTTLED is answered (0 = no limit)
//	-max-window N       submit_sm awaiting their response per bind above which -window-status is answered (0 = no limit)
//	-window-status S    command_status beyond -max-window (default 0x58)
//	-error-rate F       fraction of submit_sm answered with -error-status
//	-error-status S     command_status for -error-rate, e.g. 0x58 (default 0x45)
//	-lost-response-rate F  fraction of submit_sm accepted (receipt sent) whose submit_sm_resp is lost
//	-deliver-attempts N failed attempts before a deliver_sm is dropped (default 50; -1 = never)
func RunSimulate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stdout)
	listen := fs.String("listen", "127.0.0.1:2775", "address to listen on")
	systemID := fs.String("system-id", DefaultSystemID, "system_id accepted in binds")
	password := fs.String("password", DefaultPassword, "password accepted in binds")
	receiptDelay := fs.Duration("receipt-delay", 0, "delay between submit_sm_resp and its delivery receipt")
	decimalIDs := fs.Bool("decimal-ids", false, "decimal message ids instead of hex")
	dataSM := fs.Bool("data-sm", false, "deliver MO messages and delivery receipts as data_sm instead of deliver_sm")
	maxTPS := fs.Float64("max-tps", 0, "per-account (system_id) submit_sm/s above which ESME_RTHROTTLED is answered (0 = no limit)")
	maxWindow := fs.Int("max-window", 0, "submit_sm awaiting their response per bind above which -window-status is answered (0 = no limit)")
	windowStatus := fs.String("window-status", "0x58", "command_status beyond -max-window (e.g. 0x58, 0x14)")
	errorRate := fs.Float64("error-rate", 0, "fraction of submit_sm answered with -error-status")
	errorStatus := fs.String("error-status", "0x45", "command_status for -error-rate (e.g. 0x58, 0x14, 0x45)")
	lostRate := fs.Float64("lost-response-rate", 0, "fraction of submit_sm accepted (receipt sent) whose submit_sm_resp is lost")
	attempts := fs.Int("deliver-attempts", DefaultDeliverAttempts, "failed attempts before a deliver_sm is dropped (-1 = never)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("simulate: unexpected argument %q", fs.Arg(0))
	}
	status, err := strconv.ParseUint(*errorStatus, 0, 32)
	if err != nil {
		return fmt.Errorf("simulate: -error-status: %w", err)
	}
	wstatus, err := strconv.ParseUint(*windowStatus, 0, 32)
	if err != nil {
		return fmt.Errorf("simulate: -window-status: %w", err)
	}
	if *errorRate < 0 || *errorRate > 1 {
		return fmt.Errorf("simulate: -error-rate %v outside [0, 1]", *errorRate)
	}
	if *lostRate < 0 || *lostRate > 1 {
		return fmt.Errorf("simulate: -lost-response-rate %v outside [0, 1]", *lostRate)
	}
	if *maxWindow < 0 {
		return fmt.Errorf("simulate: -max-window %d is negative", *maxWindow)
	}
	if *attempts == 0 || *attempts < -1 {
		return fmt.Errorf("simulate: -deliver-attempts %d: want at least 1, or -1", *attempts)
	}
	if *maxTPS < 0 {
		return fmt.Errorf("simulate: -max-tps %v is negative", *maxTPS)
	}
	sim, err := NewSimulator(SimOptions{
		Addr:            *listen,
		SystemID:        *systemID,
		Password:        *password,
		ReceiptDelay:    *receiptDelay,
		DecimalIDs:      *decimalIDs,
		DataSM:          *dataSM,
		DeliverAttempts: *attempts,
		RecordLimit:     -1, // a long-running stand-in keeps no history
		Faults: Faults{
			MaxTPS:           *maxTPS,
			MaxWindow:        *maxWindow,
			WindowStatus:     uint32(wstatus),
			ErrorRate:        *errorRate,
			ErrorStatus:      uint32(status),
			LostResponseRate: *lostRate,
		},
		Logger: slog.New(slog.NewTextHandler(stdout, nil)),
	})
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	if _, err := fmt.Fprintln(stdout, sim.Addr()); err != nil {
		_ = sim.Close()
		return fmt.Errorf("simulate: %w", err)
	}
	<-ctx.Done()
	if err := sim.Close(); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	return nil
}
