#ifndef PORTOUT_CCURLSHIM_H
#define PORTOUT_CCURLSHIM_H

// Typed entry points for libcurl's variadic functions, which Swift cannot call.
// Each wrapper passes its argument through unchanged with the type libcurl
// expects for that option kind.

#include <curl/curl.h>

#pragma clang assume_nonnull begin

typedef size_t (*PortoutCurlDataCallback)(char *_Nullable data, size_t size, size_t count, void *_Nullable context);

CURLcode portout_curl_easy_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode portout_curl_easy_setopt_offset(CURL *handle, CURLoption option, curl_off_t value);
CURLcode portout_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *_Nullable value);
CURLcode portout_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *_Nullable value);
CURLcode portout_curl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *_Nullable value);
CURLcode portout_curl_easy_setopt_data_callback(CURL *handle, CURLoption option, PortoutCurlDataCallback value);

CURLcode portout_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode portout_curl_easy_getinfo_double(CURL *handle, CURLINFO info, double *value);
CURLcode portout_curl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void *_Nullable *_Nonnull value);

CURLMcode portout_curl_multi_setopt_long(CURLM *handle, CURLMoption option, long value);

#pragma clang assume_nonnull end

#endif
