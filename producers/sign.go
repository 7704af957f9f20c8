package producers

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// validateSigning checks the signing settings without I/O.
func (c *Config) validateSigning() error {
	if c.Signing == nil || c.Signer != nil {
		return nil
	}
	if err := c.Signing.Validate("producers: config: signing"); err != nil {
		return err
	}
	if c.Agent.ID == "" {
		return errors.New("producers: config: signing: agent.agent_id is required (the key signs that agent's events)")
	}
	return nil
}

// loadSigner loads the key Signing names into Signer, unless a Signer was
// given.
func (c *Config) loadSigner() error {
	if c.Signing == nil || c.Signer != nil {
		return nil
	}
	s, err := signing.LoadSigner(c.Agent.ID, *c.Signing)
	if err != nil {
		return fmt.Errorf("producers: %w", err)
	}
	c.Signer = s
	return nil
}

// sign signs the record value of ev, when a signer is configured, into p's
// own header and signature buffers, so signing allocates nothing per event.
func (e *Emitter) sign(p *pending, ev *schemas.Event, value []byte) error {
	if e.cfg.Signer == nil {
		return nil
	}
	s, err := e.cfg.Signer.SignerFor(ev.Agent.ID)
	if err != nil {
		return fmt.Errorf("producers: %s event refused: %w", ev.Type, err)
	}
	p.hdrs[0] = kgo.RecordHeader{Key: signing.HeaderKeyID, Value: s.KeyIDHeader()}
	p.hdrs[1] = kgo.RecordHeader{Key: signing.HeaderSignature, Value: s.AppendSign(p.sig[:0], value)}
	p.rec.Headers = p.hdrs[:]
	return nil
}
