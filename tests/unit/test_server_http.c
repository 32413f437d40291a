/*
 * tests/unit/test_server_http.c — sgl serve's request parser (server/http.h,
 * http_parse_*): whole and split requests, chunked bodies, pipelining, and
 * each limit's status; query parameters.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "server/http.h"

static HttpParse *parser(size_t max_header, size_t max_body)
{
    HttpLimits lim;
    http_limits_default(&lim);
    if (max_header) lim.max_header_bytes = max_header;
    if (max_body) lim.max_body_bytes = max_body;
    HttpParse *p = http_parse_new(&lim);
    cr_assert(p);
    return p;
}

static int feed(HttpParse *p, const char *s, int *status, const HttpRequest **req)
{
    return http_parse_feed(p, s, strlen(s), status, req);
}

Test(http_parse, get_with_query_and_auth)
{
    HttpParse *p = parser(0, 0);
    int st;
    const HttpRequest *r;
    cr_assert_eq(feed(p, "GET /v1/models?a=1&name=x%20y+z HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer k\r\n\r\n", &st, &r), 1);
    cr_assert_str_eq(r->method, "GET");
    cr_assert_str_eq(r->path, "/v1/models");
    cr_assert_str_eq(r->authorization, "Bearer k");
    cr_assert_eq(r->body_len, 0);
    char v[32];
    cr_assert_eq(http_query_param(r->query, "name", v, sizeof v), 0);
    cr_assert_str_eq(v, "x y z");
    cr_assert_eq(http_query_param(r->query, "nam", v, sizeof v), -1);
    http_parse_free(p);
}

Test(http_parse, body_split_across_reads)
{
    HttpParse *p = parser(0, 0);
    int st;
    const HttpRequest *r;
    cr_assert_eq(feed(p, "POST /generate HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"te", &st, &r), 0);
    cr_assert_eq(feed(p, "xt\":\"a\"}", &st, &r), 1);
    cr_assert_str_eq(r->body, "{\"text\":\"a\"}");
    cr_assert_eq(r->body_len, 12);
    http_parse_free(p);
}

Test(http_parse, chunked_body)
{
    HttpParse *p = parser(0, 0);
    int st;
    const HttpRequest *r;
    cr_assert_eq(feed(p, "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                      &st, &r),
                 1);
    cr_assert_str_eq(r->body, "abcde");
    http_parse_free(p);
}

Test(http_parse, pipelined_requests_one_at_a_time)
{
    HttpParse *p = parser(0, 0);
    int st;
    const HttpRequest *r;
    const char *two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    cr_assert_eq(http_parse_feed(p, two, strlen(two), &st, &r), 1);
    cr_assert_str_eq(r->path, "/a");
    size_t used = http_parse_consumed(p);
    cr_assert_lt(used, strlen(two));
    cr_assert_eq(http_parse_feed(p, two + used, strlen(two) - used, &st, &r), 1);
    cr_assert_str_eq(r->path, "/b");
    http_parse_free(p);
}

Test(http_parse, limits_and_errors)
{
    int st;
    const HttpRequest *r;
    HttpParse *p = parser(64, 0);
    cr_assert_eq(feed(p, "GET /x HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", &st, &r), -1);
    cr_assert_eq(st, 431);
    http_parse_free(p);

    p = parser(0, 10);   /* declared too large: refused before the body */
    cr_assert_eq(feed(p, "POST /x HTTP/1.1\r\nContent-Length: 11\r\n\r\n", &st, &r), -1);
    cr_assert_eq(st, 413);
    http_parse_free(p);

    p = parser(0, 10);   /* chunked past the limit */
    cr_assert_eq(feed(p, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n", &st, &r), -1);
    cr_assert_eq(st, 413);
    http_parse_free(p);

    p = parser(0, 0);
    cr_assert_eq(feed(p, "NOT HTTP AT ALL\r\n\r\n", &st, &r), -1);
    cr_assert_eq(st, 400);
    http_parse_free(p);
}
