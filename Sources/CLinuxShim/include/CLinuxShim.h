#ifndef PORTOUT_CLINUXSHIM_H
#define PORTOUT_CLINUXSHIM_H

// Linux interfaces that Swift's Glibc module does not export: epoll, eventfd, and the GNU extensions accept4,
// pthread_setname_np and malloc_trim.

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <sys/socket.h>

int portout_accept4(int fd, struct sockaddr *_Nullable address, socklen_t *_Nullable length, int flags);

// Initialises a mutex that spins briefly before it sleeps (PTHREAD_MUTEX_ADAPTIVE_NP), for locks held for
// a few hundred instructions by several threads at once.
int portout_mutex_init_adaptive(pthread_mutex_t *_Nonnull mutex);

// Names the calling thread; the kernel keeps the first 15 bytes.
int portout_set_thread_name(const char *_Nonnull name);

// Returns the allocator's free memory to the kernel, as far as it can (malloc_trim(0)).
void portout_release_free_memory(void);

#endif
