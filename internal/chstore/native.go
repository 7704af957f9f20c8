package chstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/ClickHouse/ch-go"
)

// Native connections: ch-go, for the inserts whose cost per row matters
// (consumers' events batch and the rows its stages write). Their columns
// are typed buffers the caller keeps and reuses; clickhouse-go builds new
// ones for every batch. Everything else stays on clickhouse-go (Open).

// NativeOptions returns ch-go's options for c, one per address in the
// configured order, with what Open gives clickhouse-go: the login, password
// (file or environment), TLS, compression, timeouts and session settings.
// It reads the password and CA files, so call it when starting.
func NativeOptions(c Config) ([]ch.Options, error) {
	if len(c.Addr) == 0 {
		return nil, errors.New("chstore: clickhouse.addr: at least one host:port is required")
	}
	password, err := c.password()
	if err != nil {
		return nil, err
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	var comp ch.Compression
	switch m := compressionMethod(c); m {
	case "none":
		comp = ch.CompressionDisabled
	case "lz4":
		comp = ch.CompressionLZ4
	case "zstd":
		comp = ch.CompressionZSTD
	default:
		return nil, fmt.Errorf("chstore: clickhouse.compression: %q is not supported by the native client", m)
	}
	var settings []ch.Setting
	for k, v := range connSettings {
		settings = append(settings, ch.Setting{Key: k, Value: v})
	}
	opts := make([]ch.Options, len(c.Addr))
	for i, a := range c.Addr {
		opts[i] = ch.Options{
			Address:     a,
			Database:    "default", // as Open: the database need not exist
			User:        c.Username,
			Password:    password,
			Compression: comp,
			Settings:    settings,
			DialTimeout: dialTimeout,
			// ch-go bounds each packet read (clickhouse-go each read too)
			// and, separately, the handshake.
			ReadTimeout:      readTimeout,
			HandshakeTimeout: readTimeout,
			TLS:              tc,
			ClientName:       "agentrail",
		}
	}
	return opts, nil
}

// DialNative connects to the first address that answers, trying them in
// order as Open does (clickhouse-go's default ConnOpenInOrder).
func DialNative(ctx context.Context, opts []ch.Options) (*ch.Client, error) {
	var errs []error
	for _, o := range opts {
		c, err := ch.Dial(ctx, o)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", o.Address, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("chstore: native connection: %w", errors.Join(errs...))
}
