package lora

import (
	"fmt"
	"io"

	"go.bug.st/serial"
)

// OpenSerial opens a serial port (a USB RNode is usually /dev/ttyUSB0 or
// /dev/ttyACM0) in raw 8N1 mode at baud (115200 when 0). Close the port
// to unblock a pending Read.
func OpenSerial(path string, baud int) (io.ReadWriteCloser, error) {
	if baud <= 0 {
		baud = 115200
	}
	p, err := serial.Open(path, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, fmt.Errorf("open serial %s: %w", path, err)
	}
	return p, nil
}
