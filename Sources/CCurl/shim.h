#ifndef PORTOUT_CCURL_SHIM_H
#define PORTOUT_CCURL_SHIM_H

#include <curl/curl.h>

#endif
