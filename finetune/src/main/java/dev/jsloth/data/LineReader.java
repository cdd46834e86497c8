package dev.jsloth.data;

import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;

/**
 * Reads {@code \n}-terminated lines as raw bytes (a trailing {@code \r} is dropped), refusing any line longer than a
 * bound before buffering it whole.
 */
final class LineReader implements AutoCloseable {
    /** Thrown when a line exceeds the bound; carries the 1-based number of that line. */
    static final class LineTooLongException extends IOException {
        final int line;

        LineTooLongException(int line, int maxBytes) {
            super("line is longer than the " + (maxBytes >= 1 << 20 && maxBytes % (1 << 20) == 0 ? (maxBytes >> 20) + " MiB" : maxBytes + " bytes") + " limit");
            this.line = line;
        }
    }

    private final InputStream in;
    private final int maxLineBytes;
    private final byte[] buf = new byte[1 << 16];
    private int pos;
    private int limit;
    private boolean eof;
    private int lineNumber;
    private byte[] line = new byte[256];

    LineReader(InputStream in, int maxLineBytes) {
        this.in = in;
        this.maxLineBytes = maxLineBytes;
    }

    /** The 1-based number of the line last returned by {@link #next()}. */
    int lineNumber() {
        return lineNumber;
    }

    /** The next line without its terminator, or null at end of input. */
    byte[] next() throws IOException {
        int len = 0;
        boolean any = false;
        while (true) {
            if (pos == limit) {
                if (eof || !fill()) {
                    if (!any) return null;
                    break;
                }
            }
            any = true;
            int start = pos;
            while (pos < limit && buf[pos] != '\n') pos++;
            int n = pos - start;
            if ((long) len + n > maxLineBytes) throw new LineTooLongException(lineNumber + 1, maxLineBytes);
            if (len + n > line.length) line = Arrays.copyOf(line, Math.max(len + n, Math.min(maxLineBytes, line.length * 2)));
            System.arraycopy(buf, start, line, len, n);
            len += n;
            if (pos < limit) { // found '\n'
                pos++;
                break;
            }
        }
        lineNumber++;
        if (len > 0 && line[len - 1] == '\r') len--;
        return Arrays.copyOf(line, len);
    }

    private boolean fill() throws IOException {
        int n = in.read(buf);
        if (n <= 0) {
            eof = true;
            return false;
        }
        pos = 0;
        limit = n;
        return true;
    }

    @Override
    public void close() throws IOException {
        in.close();
    }
}
