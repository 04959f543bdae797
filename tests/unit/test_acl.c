/* test_acl.c: access lists: CIDR rules (IPv4-mapped IPv6 rules included),
 * rule files (long lines, comments, several rules a line, FILE:LINE errors)
 * and who dx_acl_allows lets in. */
#define _GNU_SOURCE
#include "helpers.h"

#define T(name) Test(acl, name, .timeout = 20, .init = acl_init, .fini = acl_fini)

static char dir[64];

static void acl_fini(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/rules", dir);
    unlink(path);
    rmdir(dir);
}

static void acl_init(void)
{
    h_alarm(H_ALARM_SECONDS);
    snprintf(dir, sizeof dir, "/tmp/duplex-test-acl-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

/* A file of `len` bytes of `text` in the test's directory; returns its path
 * (a static buffer). len lets a test put NUL bytes in it. */
static const char *file_of(const char *text, size_t len)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/rules", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
    return path;
}

static const char *file_text(const char *text) { return file_of(text, strlen(text)); }

static dx_addr peer(const char *ip)
{
    dx_addr a;
    cr_assert_eq(dx_addr_ip(&a, ip, 4242), 0, "dx_addr_ip(%s)", ip);
    return a;
}

/* A dual-stack socket's IPv4 client: ::ffff:a.b.c.d in a sockaddr_in6. */
static dx_addr mapped_peer(const char *ipv4)
{
    char text[64];
    snprintf(text, sizeof text, "::ffff:%s", ipv4);
    dx_addr a = peer(text);
    cr_assert_eq(a.ss.ss_family, AF_INET6);
    return a;
}

static int allows(const dx_acl *acl, const char *ip)
{
    dx_addr a = peer(ip);
    return dx_acl_allows(acl, &a);
}

/* ---- rule files ---- */

T(long_comment_is_all_comment)
{
    /* the tail of a long comment must not become a rule: with a 512-byte
     * line buffer, what follows byte 511 was read as the next line */
    char text[2048];
    int n = snprintf(text, sizeof text, "# ");
    memset(text + n, 'a', 509);
    n += 509;
    n += snprintf(text + n, sizeof text - (size_t)n, "127.0.0.1\n10.0.0.1\n");
    dx_acl acl = {0};
    int bad = -1;
    cr_assert_eq(dx_acl_add_file(&acl, file_text(text), 1, &bad), 1);
    cr_assert_eq(acl.nallow, 1);
    cr_assert_eq(bad, -1);
    cr_assert_eq(allows(&acl, "127.0.0.1"), 0, "the comment's tail was taken as a rule");
    cr_assert_eq(allows(&acl, "10.0.0.1"), 1);
    dx_acl_free(&acl);
}

/* dx_acl_file_*: the words of a rule file, one per call, each with its line
 * (the command takes host names from them); the grammar is dx_acl_add_file's.
 * No callback: the program pulls the words. */
T(file_reader_gives_every_word_and_its_line)
{
    int err = 0, line = -1;
    dx_acl_file *f = dx_acl_file_open(file_text("# c\nlocalhost 10.0.0.1 # x y\n\n \thost-b\n"), &err);
    cr_assert_not_null(f, "%s", dx_strerror(err));
    const char *word = NULL;
    static const struct { const char *word; int line; } want[] = {
        {"localhost", 2}, {"10.0.0.1", 2}, {"host-b", 4}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_eq(dx_acl_file_next(f, &word, &line), 1, "word %zu", i);
        cr_assert_str_eq(word, want[i].word);
        cr_assert_eq(line, want[i].line, "%s", word);
    }
    cr_assert_eq(dx_acl_file_next(f, &word, NULL), 0);
    cr_assert_eq(dx_acl_file_next(f, &word, &line), 0, "the end is the end again");
    dx_acl_file_close(f);
    dx_acl_file_close(NULL);
}

T(file_reader_stops_at_a_nul_byte_for_good)
{
    static const char text[] = "10.0.0.1\n10.0.0.2 \0 10.0.0.3\n10.0.0.4\n";
    int err = 0, line = 0;
    dx_acl_file *f = dx_acl_file_open(file_of(text, sizeof text - 1), &err);
    cr_assert_not_null(f);
    const char *word;
    cr_assert_eq(dx_acl_file_next(f, &word, &line), 1);
    cr_assert_str_eq(word, "10.0.0.1");
    cr_assert_eq(dx_acl_file_next(f, &word, &line), DX_EBADADDR);
    cr_assert_eq(line, 2);
    line = 0;
    cr_assert_eq(dx_acl_file_next(f, &word, &line), DX_EBADADDR, "an error is sticky");
    cr_assert_eq(line, 2);
    dx_acl_file_close(f);
}

T(file_reader_open_failure)
{
    char path[160];
    snprintf(path, sizeof path, "%s/none", dir);
    int err = 0;
    cr_assert_null(dx_acl_file_open(path, &err));
    cr_assert_eq(err, -ENOENT, "%s", dx_strerror(err));
    cr_assert_null(dx_acl_file_open(path, NULL));
}

/* Long lines and many words: the reader and dx_acl_add_file agree. */
T(file_reader_agrees_with_add_file)
{
    char text[8192];
    size_t n = 0;
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "10.%d.%d.0/24%s", i / 100, i % 100,
                              i % 7 == 6 ? "\n" : i % 5 == 4 ? " # c\n" : " \t");
    const char *path = file_text(text);
    dx_acl acl = {0};
    cr_assert_eq(dx_acl_add_file(&acl, path, 1, NULL), 300);
    int err = 0;
    dx_acl_file *f = dx_acl_file_open(path, &err);
    cr_assert_not_null(f);
    const char *word;
    size_t i = 0;
    while (dx_acl_file_next(f, &word, NULL) == 1) {
        dx_cidr c;
        cr_assert_eq(dx_cidr_parse(&c, word), 0, "%s", word);
        cr_assert_lt(i, acl.nallow);
        cr_assert_eq(memcmp(&c, &acl.allow[i], sizeof c), 0, "word %zu: %s", i, word);
        i++;
    }
    cr_assert_eq(i, 300);
    dx_acl_file_close(f);
    dx_acl_free(&acl);
}

T(long_line_of_rules)
{
    /* 200 rules on one line (about 2.5 KB): every one counts */
    char text[8192];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "10.0.%d.%d ", i / 100, i % 100);
    snprintf(text + n, sizeof text - n, "# and a comment\n");
    dx_acl acl = {0};
    cr_assert_eq(dx_acl_add_file(&acl, file_text(text), 0, NULL), 200);
    cr_assert_eq(acl.ndeny, 200);
    cr_assert_eq(allows(&acl, "10.0.1.99"), 0);
    cr_assert_eq(allows(&acl, "10.0.0.0"), 0);
    cr_assert_eq(allows(&acl, "10.0.2.0"), 1);
    dx_acl_free(&acl);
}

T(trailing_comments_and_several_rules_a_line)
{
    const char *text = "# clients\n"
                       "\n"
                       "   \t\n"
                       "10.0.0.1 # the first\n"
                       "10.0.0.2#no space before the comment\n"
                       "10.0.0.3\t10.0.0.4   10.0.0.0/30 # three on one line\n"
                       "\t2001:db8::/32\r\n"
                       "   # indented comment 10.9.9.9\n"
                       "10.0.0.5"; /* no final newline */
    dx_acl acl = {0};
    cr_assert_eq(dx_acl_add_file(&acl, file_text(text), 1, NULL), 7);
    for (int i = 0; i <= 5; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.0.0.%d", i);
        cr_expect_eq(allows(&acl, ip), 1, "%s", ip);
    }
    cr_assert_eq(allows(&acl, "10.0.0.6"), 0);
    cr_assert_eq(allows(&acl, "10.9.9.9"), 0, "a rule inside a comment was taken");
    cr_assert_eq(allows(&acl, "2001:db8::7"), 1);
    dx_acl_free(&acl);
}

T(bad_word_names_its_line_and_adds_nothing)
{
    const char *text = "# ok\n10.0.0.1\n\n10.0.0.2 nonsense # comment\n10.0.0.3\n";
    dx_acl acl = {0};
    int bad = 0;
    cr_assert_eq(dx_acl_add_file(&acl, file_text(text), 1, &bad), DX_EBADADDR);
    cr_assert_eq(bad, 4);
    cr_assert_eq(acl.nallow, 0, "rules before the bad line were kept");
    /* rules added before the file stay */
    cr_assert_eq(dx_acl_add(&acl, "10.1.0.0/16", 0), 0);
    cr_assert_eq(dx_acl_add_file(&acl, file_text("10.2.0.0/16\n10.3.0.0/33\n"), 0, &bad), DX_EBADADDR);
    cr_assert_eq(bad, 2);
    cr_assert_eq(acl.ndeny, 1);
    cr_assert_eq(allows(&acl, "10.1.2.3"), 0);
    cr_assert_eq(allows(&acl, "10.2.2.3"), 1);
    dx_acl_free(&acl);
}

T(line_numbers_count_long_lines_once)
{
    char text[4096];
    int n = snprintf(text, sizeof text, "10.0.0.1 #");
    memset(text + n, 'x', 1500);
    n += 1500;
    snprintf(text + n, sizeof text - (size_t)n, "\n10.0.0.2\nbogus\n");
    dx_acl acl = {0};
    int bad = 0;
    cr_assert_eq(dx_acl_add_file(&acl, file_text(text), 0, &bad), DX_EBADADDR);
    cr_assert_eq(bad, 3);
    dx_acl_free(&acl);
}

T(nul_byte_is_an_error)
{
    /* what follows the NUL would be dropped unseen (a lost deny rule) */
    static const char text[] = "10.0.0.1\n10.0.0.2\0 10.0.0.3\n";
    dx_acl acl = {0};
    int bad = 0;
    cr_assert_eq(dx_acl_add_file(&acl, file_of(text, sizeof text - 1), 0, &bad), DX_EBADADDR);
    cr_assert_eq(bad, 2);
    cr_assert_eq(acl.ndeny, 0);
    dx_acl_free(&acl);
}

T(empty_and_missing_files)
{
    dx_acl acl = {0};
    cr_assert_eq(dx_acl_add_file(&acl, file_text(""), 1, NULL), 0);
    cr_assert_eq(dx_acl_add_file(&acl, file_text("# nothing\n\n"), 1, NULL), 0);
    cr_assert_eq(acl.nallow, 0);
    char path[128];
    snprintf(path, sizeof path, "%s/missing", dir);
    cr_assert_eq(dx_acl_add_file(&acl, path, 1, NULL), -ENOENT);
    dx_acl_free(&acl);
}

/* ---- IPv4-mapped IPv6 rules ---- */

T(mapped_rule_is_stored_as_ipv4)
{
    static const struct { const char *text; const char *net; int prefix; } cases[] = {
        {"::ffff:127.0.0.1", "127.0.0.1", 32},
        {"::ffff:127.0.0.0/104", "127.0.0.0", 8},
        {"::ffff:127.1.2.3/104", "127.0.0.0", 8}, /* host bits cleared */
        {"::FFFF:10.0.0.0/120", "10.0.0.0", 24},
        {"::ffff:7f00:1", "127.0.0.1", 32},       /* the hex spelling */
        {"::ffff:0.0.0.0/96", "0.0.0.0", 0},      /* every IPv4 address */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dx_cidr c;
        cr_assert_eq(dx_cidr_parse(&c, cases[i].text), 0, "%s", cases[i].text);
        cr_expect_eq(c.family, AF_INET, "%s", cases[i].text);
        cr_expect_eq(c.prefix, cases[i].prefix, "%s: /%d", cases[i].text, c.prefix);
        unsigned char want[4];
        inet_pton(AF_INET, cases[i].net, want);
        cr_expect_eq(memcmp(c.addr, want, 4), 0, "%s", cases[i].text);
    }
}

T(mapped_rule_shorter_than_96_is_refused)
{
    /* it would reach beyond the IPv4 addresses into plain IPv6 ones */
    static const char *const bad[] = {"::ffff:127.0.0.1/95", "::ffff:10.0.0.0/80", "::ffff:0:0/0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dx_cidr c;
        cr_expect_eq(dx_cidr_parse(&c, bad[i]), DX_EBADADDR, "%s", bad[i]);
    }
}

T(mapped_rules_match_ipv4_peers)
{
    dx_acl acl = {0};
    cr_assert_eq(dx_acl_add(&acl, "::ffff:127.0.0.1", 0), 0);
    cr_assert_eq(allows(&acl, "127.0.0.1"), 0, "--deny ::ffff:127.0.0.1 let 127.0.0.1 in");
    dx_addr m = mapped_peer("127.0.0.1");
    cr_assert_eq(dx_acl_allows(&acl, &m), 0);
    cr_assert_eq(allows(&acl, "127.0.0.2"), 1);
    cr_assert_eq(allows(&acl, "::1"), 1);
    dx_acl_free(&acl);

    cr_assert_eq(dx_acl_add(&acl, "::ffff:127.0.0.0/104", 1), 0);
    cr_assert_eq(allows(&acl, "127.9.9.9"), 1);
    m = mapped_peer("127.9.9.9");
    cr_assert_eq(dx_acl_allows(&acl, &m), 1);
    cr_assert_eq(allows(&acl, "128.0.0.1"), 0);
    cr_assert_eq(allows(&acl, "::1"), 0);
    dx_acl_free(&acl);

    /* in a file too */
    cr_assert_eq(dx_acl_add_file(&acl, file_text("::ffff:10.0.0.0/104 # mapped\n"), 0, NULL), 1);
    cr_assert_eq(allows(&acl, "10.1.2.3"), 0);
    cr_assert_eq(allows(&acl, "11.1.2.3"), 1);
    dx_acl_free(&acl);
}

T(ipv4_rules_match_mapped_peers_ipv6_rules_do_not)
{
    dx_acl acl = {0};
    cr_assert_eq(dx_acl_add(&acl, "127.0.0.0/8", 0), 0);
    dx_addr m = mapped_peer("127.0.0.5");
    cr_assert_eq(dx_acl_allows(&acl, &m), 0);
    dx_acl_free(&acl);
    /* an IPv6 rule is for IPv6 peers: ::/0 does not reach IPv4 ones */
    cr_assert_eq(dx_acl_add(&acl, "::/0", 0), 0);
    cr_assert_eq(allows(&acl, "::1"), 0);
    cr_assert_eq(allows(&acl, "127.0.0.1"), 1);
    m = mapped_peer("127.0.0.1");
    cr_assert_eq(dx_acl_allows(&acl, &m), 1);
    dx_acl_free(&acl);
}

T(unix_peers_are_allowed)
{
    dx_acl acl = {0};
    cr_assert_eq(dx_acl_add(&acl, "0.0.0.0/0", 0), 0);
    cr_assert_eq(dx_acl_add(&acl, "::/0", 0), 0);
    dx_addr u;
    cr_assert_eq(dx_addr_unix(&u, "@duplex-test-acl"), 0);
    cr_assert_eq(dx_acl_allows(&acl, &u), 1);
    dx_acl_free(&acl);
}
