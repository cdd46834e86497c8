package dev.jsloth.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/** Write-then-rename with fsync, so a reader (or a crash) never sees a half-written file. */
public final class AtomicFiles {
    private AtomicFiles() {
    }

    /** A writer of a file's content into an open channel. */
    public interface Content {
        void writeTo(FileChannel channel) throws IOException;
    }

    /**
     * A hidden directory to build in and then rename into place (a checkpoint, an adapter): made with the permissions of
     * an ordinary directory (rwxr-xr-x), not the owner-only ones of a temporary directory.
     */
    public static Path createBuildDirectory(Path parent, String prefix) throws IOException {
        return createUnique(parent, prefix, "", Files::createDirectory); // createDirectory honours the umask (createTempDirectory: 0700)
    }

    /** One way of making a new path that fails where it exists ({@code Files::createFile}, {@code Files::createDirectory}). */
    private interface Creator {
        Path create(Path p, java.nio.file.attribute.FileAttribute<?>... attributes) throws IOException;
    }

    /** {@code prefix + random + suffix} in {@code dir}, made new by {@code creator} (another random name where one exists). */
    private static Path createUnique(Path dir, String prefix, String suffix, Creator creator) throws IOException {
        for (int attempt = 0; ; attempt++) {
            String random = Long.toHexString(java.util.concurrent.ThreadLocalRandom.current().nextLong() & Long.MAX_VALUE);
            try {
                return creator.create(dir.resolve(prefix + random + suffix));
            } catch (java.nio.file.FileAlreadyExistsException e) {
                if (attempt > 100) throw e;
            }
        }
    }

    public static void write(Path target, byte[] bytes) throws IOException {
        write(target, ch -> {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) ch.write(b);
        });
    }

    public static void write(Path target, Content content) throws IOException {
        Path dir = target.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        // an ordinary new file (the umask's permissions; createTempFile would make it owner-only, 0600)
        Path tmp = createUnique(dir, "." + target.getFileName() + ".", ".tmp", Files::createFile);
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
                content.writeTo(ch);
                ch.force(true);
            }
            // a replaced file keeps its permissions (set now that the content is written: a read-only one stays so)
            if (Files.exists(target) && tmp.getFileSystem().supportedFileAttributeViews().contains("posix"))
                Files.setPosixFilePermissions(tmp, Files.getPosixFilePermissions(target));
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
            syncDirectory(dir);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /** fsync a directory so a rename inside it is durable (best effort where the platform refuses). */
    public static void syncDirectory(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException ignored) {
            // some file systems do not allow opening directories; the rename is still atomic
        }
    }
}
