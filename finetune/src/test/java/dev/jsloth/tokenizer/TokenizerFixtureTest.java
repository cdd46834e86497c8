package dev.jsloth.tokenizer;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.Arrays;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The reference cases produced by the tokenizers library, for both tokenizer families. */
class TokenizerFixtureTest {
    private static final Tokenizer BYTE_LEVEL = Fixtures.load(Fixtures.BYTE_LEVEL);
    private static final Tokenizer SPM = Fixtures.load(Fixtures.SPM);

    static Stream<Fixtures.Case> cases() {
        return Stream.concat(Fixtures.cases(Fixtures.BYTE_LEVEL).stream(), Fixtures.cases(Fixtures.SPM).stream());
    }

    private static Tokenizer tokenizer(Fixtures.Case c) {
        return c.fixture().equals(Fixtures.BYTE_LEVEL) ? BYTE_LEVEL : SPM;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void encodesWithoutSpecialTokens(Fixtures.Case c) {
        assertArrayEquals(c.ids(), tokenizer(c).encode(c.text(), false),
                () -> "got " + Arrays.toString(tokenizer(c).encode(c.text(), false)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void encodesWithSpecialTokens(Fixtures.Case c) {
        assertArrayEquals(c.idsSpecial(), tokenizer(c).encode(c.text(), true),
                () -> "got " + Arrays.toString(tokenizer(c).encode(c.text(), true)));
    }

    @Test
    void fixturesAreNotEmpty() {
        assertTrue(Fixtures.cases(Fixtures.BYTE_LEVEL).size() >= 10);
        assertTrue(Fixtures.cases(Fixtures.SPM).size() >= 10);
    }

    @Test
    void vocabularySizes() {
        assertEquals(Fixtures.vocabularySize(Fixtures.BYTE_LEVEL), BYTE_LEVEL.vocabSize());
        assertEquals(Fixtures.vocabularySize(Fixtures.SPM), SPM.vocabSize());
    }
}
