package dev.jsloth;

import dev.jsloth.demo.DemoAssets;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Compiles the Java example in README.md exactly as written and runs it on the demo model. */
class ReadmeExampleTest {
    @Test
    void readmeExampleCompilesAndTrains(@TempDir Path tmp) throws Exception {
        String readme = Files.readString(Path.of("..", "README.md"));
        Matcher m = Pattern.compile("```java\\n(.*?)```", Pattern.DOTALL).matcher(readme);
        assertTrue(m.find(), "README.md has a ```java block");
        String source = m.group(1);
        Matcher cls = Pattern.compile("public class (\\w+)").matcher(source);
        assertTrue(cls.find(), "the example declares a public class");
        Path src = tmp.resolve(cls.group(1) + ".java");
        Files.writeString(src, source);
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc = javac.run(null, null, err, "-d", tmp.toString(), "-cp", System.getProperty("java.class.path"), src.toString());
        assertEquals(0, rc, "README example does not compile:\n" + err);

        Path assets = DemoAssets.ensure(tmp.resolve("demo"));
        PrintStream old = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setOut(new PrintStream(captured, true));
        try (URLClassLoader loader = new URLClassLoader(new URL[]{tmp.toUri().toURL()}, getClass().getClassLoader())) {
            loader.loadClass(cls.group(1)).getMethod("main", String[].class).invoke(null, (Object) new String[]{
                    DemoAssets.modelDir(assets).toString(), DemoAssets.dataset(assets).toString(), tmp.resolve("out").toString()});
        } finally {
            System.setOut(old);
        }
        String out = captured.toString();
        assertTrue(out.contains("step 10 loss") && out.contains("adapter written to"), out);
        assertTrue(Files.isRegularFile(tmp.resolve("out/adapter/adapter_model.safetensors")));
    }
}
