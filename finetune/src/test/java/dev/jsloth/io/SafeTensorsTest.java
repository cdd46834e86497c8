package dev.jsloth.io;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Writer/reader round trip, and malformed files rejected with the file and tensor named. */
class SafeTensorsTest {

    static Path raw(Path dir, String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Path p = dir.resolve("t.safetensors");
        Files.write(p, b.array());
        return p;
    }

    static String rejected(Path p) {
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> SafeTensorsFile.open(p).close());
        assertTrue(e.getMessage().startsWith(p.toString()), e.getMessage());
        return e.getMessage();
    }

    @Test
    void roundTrip(@TempDir Path dir) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment x = TensorBytes.encode("F32", new double[]{1, 2, 3, 4, 5, 6}, a);
            MemorySegment y = TensorBytes.encode("BF16", new double[]{1.5, -2}, a);
            new SafeTensorsWriter().metadata("format", "pt").add("x", "F32", new int[]{2, 3}, x).add("y", "BF16", new int[]{2}, y).write(dir.resolve("m.safetensors"));
        }
        try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("m.safetensors"))) {
            assertEquals(java.util.List.of("x", "y"), f.names());
            assertEquals("pt", f.metadata().get("format"));
            assertArrayEquals(new long[]{2, 3}, f.entry("x").shape());
            assertEquals(6 * 4, f.bytes("x").byteSize());
            assertEquals(4.0f, f.bytes("x").getAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, 3));
        }
    }

    @Test
    void malformedFilesAreClearErrors(@TempDir Path dir) throws IOException {
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8)).contains("past the data section"));
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8)).contains("tensor 'x'"));
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8)).contains("unknown dtype"));
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8)).contains("shape[0]"));
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}", 8)).contains("overflow"));
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12)).contains("overlap"));
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8)).contains("not valid JSON"));
        assertTrue(rejected(raw(dir, "[1,2]", 0)).contains("JSON object"));
        // the tensors must fill the data section back to back, as the format requires: no gap, nothing left over, and an
        // empty tensor inside another cannot hide an overlap after it
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12))
                .contains("bytes [4, 8) of the data belong to no tensor"));
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12)).contains("4 bytes after the last tensor"));
        assertTrue(rejected(raw(dir, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                + "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 16)).contains("overlap"));
        assertTrue(rejected(raw(dir, "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} {}", 8)).contains("not valid JSON"));
        // an empty tensor where the next one starts, and header padding with spaces, are fine
        try (SafeTensorsFile ok = SafeTensorsFile.open(raw(dir, "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                + "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}    ", 8))) {
            assertEquals(2, ok.names().size());
        }
        Path p = dir.resolve("short.safetensors");
        Files.write(p, new byte[]{1, 2, 3});
        assertTrue(rejected(p).contains("too short"));
        ByteBuffer b = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(Long.MAX_VALUE);
        Files.write(p, b.array());
        assertTrue(rejected(p).contains("header length"));
    }

    @Test
    void shardIndexCannotEscapeTheDirectory(@TempDir Path dir) throws IOException {
        Files.writeString(dir.resolve(SafeTensorsCheckpoint.INDEX), "{\"weight_map\":{\"x\":\"../evil.safetensors\"}}");
        CheckpointFormatException e = assertThrows(CheckpointFormatException.class, () -> SafeTensorsCheckpoint.open(dir).close());
        assertTrue(e.getMessage().contains("not a plain file name"), e.getMessage());
    }

    /** Written files and build directories are ordinary ones (the umask's permissions), not owner-only temporary ones. */
    @Test
    void atomicWritesLeaveOrdinaryPermissions(@TempDir Path dir) throws IOException {
        org.junit.jupiter.api.Assumptions.assumeTrue(dir.getFileSystem().supportedFileAttributeViews().contains("posix"), "no POSIX permissions here");
        // what an ordinary new file and directory get here (the umask's)
        Path probe = Files.createFile(dir.resolve("probe")), probeDir = Files.createDirectory(dir.resolve("probe-dir"));
        Path f = dir.resolve("a.json");
        AtomicFiles.write(f, new byte[]{'{', '}'});
        assertEquals(Files.getPosixFilePermissions(probe), Files.getPosixFilePermissions(f), "not owner-only as a temporary file");
        Files.setPosixFilePermissions(f, java.nio.file.attribute.PosixFilePermissions.fromString("r--r-----"));
        AtomicFiles.write(f, new byte[]{'[', ']'});
        assertEquals("r--r-----", java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(f)),
                "a replaced file keeps its own, read-only too");
        assertEquals("[]", Files.readString(f));
        Path d = AtomicFiles.createBuildDirectory(dir, ".tmp-");
        assertEquals(Files.getPosixFilePermissions(probeDir), Files.getPosixFilePermissions(d));
    }
}
