/*
 * runtime/tokenizer.h — text <-> token ids for the models sgl runs.
 *
 * Owns: the vocabulary, the BPE merge tables, the normalizer and
 * pre-tokenizer steps, added/special tokens, encoding (text -> ids) and the
 * per-token pieces that decoding concatenates. Loaders: GGUF metadata
 * (tokenizer.ggml.*) and a Hugging Face directory (tokenizer.json +
 * tokenizer_config.json). Does not own: streaming detokenization and stop
 * strings (runtime/detok.h), chat-template rendering (the template text is
 * only exposed here), the GGUF file itself (runtime/gguf.h).
 *
 * Two model kinds cover the Llama family:
 *
 *   byte-level BPE (GPT-2 style: Llama 3, Qwen2, SmolLM2). Text is split by
 *   the pre-tokenizer regexes (PCRE2, Unicode classes), every byte of a piece
 *   becomes the vocabulary symbol of its GPT-2 byte<->unicode character,
 *   and merges are applied lowest rank first (ties: leftmost).
 *
 *   SentencePiece-style BPE (Llama 2, Mistral): spaces become U+2581 "▁",
 *   an optional "▁" is prepended, characters are the initial symbols,
 *   characters missing from the vocabulary fall back to <0xXX> byte tokens.
 *   From GGUF (tokenizer.ggml.model = "llama") pairs merge by the score of
 *   the merged token, highest first, like llama.cpp; from tokenizer.json
 *   (model.type = BPE, byte_fallback) by merge rank, like `tokenizers`.
 *
 *   encode(text):
 *     added/special tokens ─► segments ─► normalizer ─► pre-tokenizer pieces
 *        (leftmost-longest)              (Prepend,     (Split regex, ByteLevel,
 *                                         Replace,      Digits, Metaspace)
 *                                         NFC)
 *        ─► per piece: word cache hit, or symbols + merges ─► ids
 *
 * Speed (bench/tokenizer): a per-piece word cache, merges in a hash map
 * keyed by id pairs, no allocation per piece once the scratch buffers have
 * grown. A SentencePiece text is one long piece; when no vocabulary token
 * has "▁" after another character (true of SentencePiece vocabularies) it is
 * cut before each word's "▁", which cannot change the result.
 *
 * Which reference each loader matches token for token: tok_load_gguf matches
 * llama.cpp (llama_tokenize), tok_load_hf matches Hugging Face `tokenizers`
 * (Tokenizer.encode), each with the regexes and options its format names.
 *
 * Added tokens: matched in the raw text before anything else, leftmost and
 * longest first. Tokens marked special (HF "special": true; GGUF control and
 * unknown types) are matched only when TOK_ENC_PARSE_SPECIAL is given;
 * other added tokens (user-defined) always are. HF lstrip/rstrip eat the
 * ASCII whitespace beside a match; single_word treats ASCII letters, digits,
 * '_' and every non-ASCII character as word characters. Approximation:
 * added tokens with "normalized": true are matched on the raw text (the same
 * as on normalized text for every normalizer supported here except where the
 * token contains a space). GGUF: like llama.cpp, tokens named like
 * end-of-turn / end-of-generation / fill-in-the-middle markers (<|im_end|>,
 * </s>, <|fim_prefix|>, ...) are control tokens whatever their type says.
 *
 * Unsupported configurations fail at load time with a message naming them
 * (e.g. a Unigram or WordPiece model, an NFKC normalizer, an unknown GGUF
 * tokenizer.ggml.pre).
 *
 * Ownership: a loader returns a Tokenizer the caller frees with tok_free.
 * Strings returned by accessors are owned by the Tokenizer and valid until
 * tok_free. A GGUF loader copies everything it needs: the GgufFile may be
 * closed afterwards.
 *
 * Threads: a Tokenizer is immutable after loading except for its encode
 * scratch and word cache, which a mutex guards: any thread may call any
 * function. Encoding from several threads at once serializes.
 *
 * Errors: functions return 0 (or a count) on success and a negative ERR_*
 * (base/err.h) on failure; loaders also write a one-line message into err
 * (errcap bytes, err may be NULL).
 */
#ifndef SGL_RUNTIME_TOKENIZER_H
#define SGL_RUNTIME_TOKENIZER_H

#include "base/err.h"   /* errors are negative ERR_* codes; err_str gives the message */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/gguf.h"


typedef struct Tokenizer Tokenizer;

/* Token attributes (a bit set; tok_token_attr). CONTROL and UNKNOWN tokens
 * are "special": skipped by TOK_DEC_SKIP_SPECIAL and only matched in input
 * text under TOK_ENC_PARSE_SPECIAL. */
enum {
    TOK_ATTR_NORMAL = 1 << 0,
    TOK_ATTR_CONTROL = 1 << 1,      /* <s>, <|im_start|>, HF special added tokens */
    TOK_ATTR_USER_DEFINED = 1 << 2, /* HF non-special added tokens */
    TOK_ATTR_UNKNOWN = 1 << 3,      /* <unk> */
    TOK_ATTR_BYTE = 1 << 4,         /* <0xXX> byte-fallback tokens */
    TOK_ATTR_UNUSED = 1 << 5,
};

/* ---- loading ------------------------------------------------------------ */

/* From a GGUF file's tokenizer.* keys: tokenizer.ggml.{model, tokens,
 * scores, token_type, merges, pre, bos_token_id, eos_token_id,
 * eot_token_id, eom_token_id, unknown_token_id, padding_token_id,
 * add_bos_token, add_eos_token, add_space_prefix} and
 * tokenizer.chat_template. Models: "gpt2" (byte-level BPE; pre: gpt2,
 * gpt-2, llama-bpe/llama3, qwen2, smollm, starcoder, refact, command-r,
 * codeshell, exaone, default ...) and "llama" (SentencePiece, scores). */
int tok_load_gguf(const GgufFile *f, Tokenizer **out, char *err, size_t errcap);

/* From a Hugging Face model directory: dir/tokenizer.json (required),
 * dir/tokenizer_config.json (optional: bos_token, eos_token,
 * add_bos_token, add_eos_token, chat_template, added_tokens_decoder) and
 * dir/chat_template.jinja (optional, wins over the config's template). */
int tok_load_hf(const char *dir, Tokenizer **out, char *err, size_t errcap);

/* Same from file paths; config_path may be NULL. */
int tok_load_hf_files(const char *tokenizer_json_path, const char *config_path,
                      Tokenizer **out, char *err, size_t errcap);

void tok_free(Tokenizer *t);

/* ---- encoding ----------------------------------------------------------- */

/* A growable id list. Zero-initialize; tok_encode appends; free with
 * tok_ids_free. Reuse one across calls to avoid allocations. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} TokIds;

void tok_ids_free(TokIds *v);

enum {
    /* Add BOS/EOS as the model asks (tok_add_bos/tok_add_eos): llama.cpp's
     * add_special, HF's add_special_tokens. */
    TOK_ENC_ADD_SPECIAL = 1 << 0,
    /* Match special (control) tokens written in the text, e.g. "<|im_start|>"
     * becomes one id (llama.cpp parse_special; HF's default). Without it that
     * text is tokenized as ordinary characters. Chat prompts want it;
     * untrusted user content may not. */
    TOK_ENC_PARSE_SPECIAL = 1 << 1,
};

/* Appends the ids of text[0..len) to out. `text` need not be valid UTF-8
 * (invalid bytes are tokenized as bytes). Returns 0, ERR_NOMEM or
 * ERR_REGEX (PCRE2 gave up; tok_last_error says why). On error out->n
 * is restored to its value on entry. */
int tok_encode(Tokenizer *t, const char *text, size_t len, unsigned flags, TokIds *out);

/* Message about the last failed tok_encode on this tokenizer (static when
 * none). */
const char *tok_last_error(const Tokenizer *t);

/* ---- decoding ----------------------------------------------------------- */

/* The bytes token `id` stands for: byte-level symbols mapped back to bytes,
 * "▁" turned into a space, <0xXX> into its byte, added tokens as written.
 * May be an incomplete UTF-8 sequence. NULL (and *len = 0) for an id
 * outside the vocabulary. */
const char *tok_token_piece(const Tokenizer *t, int32_t id, size_t *len);

/* The vocabulary string as stored (e.g. "Ġhello", "▁hello", "<0x0A>"). */
const char *tok_token_text(const Tokenizer *t, int32_t id, size_t *len);

unsigned tok_token_attr(const Tokenizer *t, int32_t id);    /* 0 if out of range */
float tok_token_score(const Tokenizer *t, int32_t id);
bool tok_is_special(const Tokenizer *t, int32_t id);       /* CONTROL or UNKNOWN */

enum {
    TOK_DEC_SKIP_SPECIAL = 1 << 0,  /* leave out CONTROL/UNKNOWN tokens */
    /* Drop one leading space from the result, as the SentencePiece decoders
     * do for the dummy prefix. tok_decode_strips_space says whether the model
     * wants it when decoding a whole sequence from its start. */
    TOK_DEC_STRIP_LEADING_SPACE = 1 << 1,
};

/* Concatenates the pieces of ids[0..n) into a malloc'd NUL-terminated
 * buffer (*out, length *out_len; free() it). Bytes are not validated: the
 * result may contain invalid UTF-8 if the ids do (runtime/detok.h repairs
 * that for streaming). Returns 0, ERR_ARG (an id out of range),
 * ERR_NOMEM. */
int tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
               char **out, size_t *out_len);

bool tok_decode_strips_space(const Tokenizer *t);

/* ---- vocabulary and special tokens -------------------------------------- */

int32_t tok_vocab_size(const Tokenizer *t);
/* -1 when the model has none. */
int32_t tok_bos(const Tokenizer *t);
int32_t tok_eos(const Tokenizer *t);
int32_t tok_eot(const Tokenizer *t);    /* end of turn: <|im_end|>, <|eot_id|>, ... */
int32_t tok_unk(const Tokenizer *t);
int32_t tok_pad(const Tokenizer *t);
bool tok_add_bos(const Tokenizer *t);
bool tok_add_eos(const Tokenizer *t);
/* End of generation: eos, eot, eom and the end-of-text tokens llama.cpp
 * treats so (<|im_end|>, <|eot_id|>, <|endoftext|>, <end_of_turn>, ...). */
bool tok_is_eog(const Tokenizer *t, int32_t id);
/* All end-of-generation ids (owned; *n set). */
const int32_t *tok_eog_ids(const Tokenizer *t, int *n);

/* Exact vocabulary lookup of a token's stored text (special or not), e.g.
 * tok_find(t, "<|im_end|>", 10). -1 if absent. */
int32_t tok_find(const Tokenizer *t, const char *text, size_t len);

/* The chat template (Jinja source) or NULL. */
const char *tok_chat_template(const Tokenizer *t);

/* "bpe" (byte-level), "spm" (SentencePiece scores), "bpe-fallback" (HF BPE
 * with byte_fallback) — for messages and tests. */
const char *tok_model_kind(const Tokenizer *t);

#endif
