#ifndef PORTOUT_CLINUXSHIM_H
#define PORTOUT_CLINUXSHIM_H

// Linux interfaces that Swift's Glibc module does not export: epoll, eventfd, and accept4 (a GNU extension).

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

int portout_accept4(int fd, struct sockaddr *_Nullable address, socklen_t *_Nullable length, int flags);

#endif
